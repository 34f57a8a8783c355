# Creates the bindings modules/access lists (all but run.invoker, which modules/services
# grants on the services it creates). Non-authoritative *_iam_member resources only: other
# bindings in the project are left alone.
variable "project_id" {
  description = "Project of the bindings."
  type        = string
}

variable "region" {
  description = "Region of the queues."
  type        = string
}

variable "access" {
  description = "modules/access's outputs."
  type        = any
}

variable "account_ids" {
  description = "Service account resource ids by role (modules/identities)."
  type        = map(string)
}

variable "topic_ids" {
  description = "Topic ids by name."
  type        = map(string)
}

variable "subscription_ids" {
  description = "Push subscription ids by name."
  type        = map(string)
}

variable "queue_ids" {
  description = "Queue ids by name."
  type        = map(string)
}

variable "secret_ids" {
  description = "Secret ids by name."
  type        = map(string)
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each  = var.access.secret_accessors
  project   = var.project_id
  secret_id = var.secret_ids[each.value.secret]
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.access.topic_publishers
  project  = var.project_id
  topic    = var.topic_ids[each.value.topic]
  role     = "roles/pubsub.publisher"
  member   = each.value.member
}

resource "google_pubsub_subscription_iam_member" "subscriber" {
  for_each     = var.access.subscription_subscribers
  project      = var.project_id
  subscription = var.subscription_ids[each.value.subscription]
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = var.access.queue_enqueuers
  project  = var.project_id
  location = var.region
  name     = var.queue_ids[each.value.queue]
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value.member
}

resource "google_service_account_iam_member" "on_account" {
  for_each           = var.access.account_roles
  service_account_id = var.account_ids[each.value.account]
  role               = each.value.role
  member             = each.value.member
}

resource "google_project_iam_member" "project" {
  for_each = var.access.project_roles
  project  = var.project_id
  role     = each.value.role
  member   = each.value.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title      = condition.value.title
      expression = condition.value.expression
    }
  }
}
