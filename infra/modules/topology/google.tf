# The topology in the google provider's own terms (durations as "Ns", endpoints, tokens),
# so the resources in the other modules only copy these fields: what tests/infra checks here
# is what gets deployed.

locals {
  google_push_subscriptions = {
    for s in local.subscriptions : s.name => {
      name                       = s.name
      topic                      = s.topic
      ack_deadline_seconds       = s.ack_deadline_seconds
      filter                     = s.filter
      enable_message_ordering    = s.enable_message_ordering
      message_retention_duration = "604800s"
      push_endpoint              = "${trimsuffix(var.worker_url, "/")}${s.push_path}"
      oidc_service_account_email = var.push_service_account
      oidc_audience              = trimsuffix(var.worker_url, "/")
      retry_policy = s.retry_policy == null ? null : {
        minimum_backoff = "${s.retry_policy.minimum_backoff_s}s"
        maximum_backoff = "${s.retry_policy.maximum_backoff_s}s"
      }
      dead_letter_policy = s.dead_letter_policy == null ? null : {
        dead_letter_topic     = s.dead_letter_policy.dead_letter_topic
        max_delivery_attempts = s.dead_letter_policy.max_delivery_attempts
      }
    }
  }

  google_pull_subscriptions = {
    for p in local.pull_subscriptions : p.name => {
      name                       = p.name
      topic                      = p.topic
      ack_deadline_seconds       = p.ack_deadline_seconds
      message_retention_duration = "${p.message_retention_s}s"
    }
  }

  google_queues = {
    for q in local.queues : q.name => {
      name                      = q.name
      max_dispatches_per_second = q.rate_limits.max_dispatches_per_second
      max_concurrent_dispatches = q.rate_limits.max_concurrent_dispatches
      max_attempts              = q.retry_config.max_attempts
      # Cloud Tasks reads an unset max_retry_duration as unlimited.
      max_retry_duration = q.retry_config.max_retry_duration_s == 0 ? null : "${q.retry_config.max_retry_duration_s}s"
      min_backoff        = "${q.retry_config.min_backoff_s}s"
      max_backoff        = "${q.retry_config.max_backoff_s}s"
      max_doublings      = q.retry_config.max_doublings
    }
  }

  google_scheduler_jobs = {
    for j in local.jobs : j.name => {
      name             = j.name
      description      = j.description
      schedule         = j.schedule
      time_zone        = j.time_zone
      attempt_deadline = "${j.attempt_deadline_s}s"
      retry_count      = j.retry_config.retry_count
      # Cloud Scheduler reads 0s as unlimited.
      max_retry_duration         = "${j.retry_config.max_retry_duration_s}s"
      min_backoff_duration       = "${j.retry_config.min_backoff_s}s"
      max_backoff_duration       = "${j.retry_config.max_backoff_s}s"
      max_doublings              = j.retry_config.max_doublings
      uri                        = "${trimsuffix(var.cron_url, "/")}${j.push_path}"
      oidc_service_account_email = var.scheduler_service_account
      oidc_audience              = var.cron_audience
    }
  }
}
