# Cloud Scheduler jobs from topology.yaml: each tick POSTs /cron/{job} on the cron function
# with an OIDC token for the scheduler account; the function turns it into a named task.
variable "project_id" {
  description = "Project of the jobs."
  type        = string
}

variable "region" {
  description = "Region of the jobs."
  type        = string
}

variable "jobs" {
  description = "google_scheduler_jobs of modules/topology, by name."
  type        = any
}

resource "google_cloud_scheduler_job" "job" {
  for_each         = var.jobs
  project          = var.project_id
  region           = var.region
  name             = each.value.name
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = each.value.time_zone
  attempt_deadline = each.value.attempt_deadline

  retry_config {
    retry_count          = each.value.retry_count
    max_retry_duration   = each.value.max_retry_duration
    min_backoff_duration = each.value.min_backoff_duration
    max_backoff_duration = each.value.max_backoff_duration
    max_doublings        = each.value.max_doublings
  }

  # No body: the function reads only X-CloudScheduler-ScheduleTime, and a body would need a
  # JSON content type to pass the function's 415 check.
  http_target {
    http_method = "POST"
    uri         = each.value.uri
    oidc_token {
      service_account_email = each.value.oidc_service_account_email
      audience              = each.value.oidc_audience
    }
  }
}

output "job_ids" {
  description = "Job ids by name."
  value       = { for name, j in google_cloud_scheduler_job.job : name => j.id }
}
