# The APIs Hookyard uses. Disabling them on destroy would break anything else in the project
# that uses them, so destroy leaves them on.
variable "project_id" {
  description = "Project to enable the APIs in."
  type        = string
}

locals {
  apis = [
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ]
}

resource "google_project_service" "api" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

output "enabled" {
  description = "The APIs enabled."
  value       = [for api in google_project_service.api : api.service]
}
