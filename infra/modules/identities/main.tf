# One service account per service, and one per caller identity (Pub/Sub push, Cloud Tasks,
# Cloud Scheduler), so each surface accepts exactly one caller and each role is granted to
# the one account that needs it. Bindings live in modules/iam and modules/services.
variable "project_id" {
  description = "Project the accounts live in."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every account id."
  type        = string
}

locals {
  accounts = {
    webhook   = "receives webhooks, verifies them and publishes verified events"
    cron      = "turns Cloud Scheduler ticks into named tasks"
    admin     = "the operators' admin API"
    worker    = "push deliveries, handlers, tasks and jobs"
    migrate   = "runs the database migrations before a release"
    push      = "the identity Pub/Sub push presents to the worker"
    tasks     = "the identity Cloud Tasks presents to the worker"
    scheduler = "the identity Cloud Scheduler presents to the cron function"
  }
}

resource "google_service_account" "account" {
  for_each     = local.accounts
  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Hookyard ${each.key}"
  description  = "Hookyard: ${each.value}."
}

output "emails" {
  description = "Account emails by role: webhook, cron, admin, worker, migrate, push, tasks, scheduler."
  value       = { for k, a in google_service_account.account : k => a.email }
}

output "ids" {
  description = "Account resource ids by role, for bindings on the accounts themselves."
  value       = { for k, a in google_service_account.account : k => a.name }
}
