# Cloud Tasks queues from topology.yaml. Each task's target, dispatch deadline and OIDC token
# are set by the code when it creates the task (common/messaging/cloud_tasks.py).
variable "project_id" {
  description = "Project of the queues."
  type        = string
}

variable "region" {
  description = "Location of the queues (HOOKYARD_GCP_REGION: the code builds queue paths with it)."
  type        = string
}

variable "queues" {
  description = "google_queues of modules/topology, by name."
  type        = any
}

resource "google_cloud_tasks_queue" "queue" {
  for_each = var.queues
  project  = var.project_id
  location = var.region
  name     = each.value.name

  rate_limits {
    max_dispatches_per_second = each.value.max_dispatches_per_second
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = each.value.max_attempts
    max_retry_duration = each.value.max_retry_duration
    min_backoff        = each.value.min_backoff
    max_backoff        = each.value.max_backoff
    max_doublings      = each.value.max_doublings
  }

  # Every attempt in Cloud Logging: the task log is the queue's audit trail.
  stackdriver_logging_config {
    sampling_ratio = 1.0
  }
}

output "queue_ids" {
  description = "Queue ids by name."
  value       = { for name, q in google_cloud_tasks_queue.queue : name => q.id }
}
