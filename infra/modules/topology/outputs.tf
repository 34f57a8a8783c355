output "topics" {
  description = "Topic names."
  value       = local.topics
}

output "subscriptions" {
  description = "Push subscriptions by name, declared then one per handler, with every default filled in."
  value       = { for s in local.subscriptions : s.name => s }

  precondition {
    condition     = alltrue([for s in local.subscriptions : length(s.filter) <= local.max_filter_bytes])
    error_message = "A subscription's filter exceeds Pub/Sub's 256 bytes (a handler with too many sources?)."
  }
}

output "pull_subscriptions" {
  description = "Pull subscriptions by name: declared ones, and {topic}-retained for each dead-letter topic."
  value       = { for p in local.pull_subscriptions : p.name => p }
}

output "queues" {
  description = "Cloud Tasks queues by name, with defaults filled in."
  value       = { for q in local.queues : q.name => q }
}

output "jobs" {
  description = "Cloud Scheduler jobs by name, with defaults filled in."
  value       = { for j in local.jobs : j.name => j }
}

output "secrets" {
  description = "Every secret the code reads: the declared ones and each source's webhook secret."
  value       = local.secrets
}

output "source_secrets" {
  description = "The webhook secrets, which only the webhook function reads."
  value       = sort(distinct([for s in local.raw_sources : s.secret]))
}

output "source_topics" {
  description = "Topics the webhook function publishes verified events to."
  value       = local.source_topics
}

output "dead_letter_topics" {
  description = "Topics some subscription dead-letters into: the Pub/Sub service agent publishes there."
  value       = local.dead_letter_topics
}

output "publish_topics" {
  description = "Topics the worker may publish to (replays, handlers' messages): all but the dead-letter topics."
  value       = [for t in local.topics : t if !contains(local.dead_letter_topics, t)]
}

output "google_push_subscriptions" {
  description = "Arguments of each google_pubsub_subscription with push delivery."
  value       = local.google_push_subscriptions
}

output "google_pull_subscriptions" {
  description = "Arguments of each pull google_pubsub_subscription."
  value       = local.google_pull_subscriptions
}

output "google_queues" {
  description = "Arguments of each google_cloud_tasks_queue."
  value       = local.google_queues
}

output "google_scheduler_jobs" {
  description = "Arguments of each google_cloud_scheduler_job."
  value       = local.google_scheduler_jobs
}

output "source_names" {
  description = "Webhook sources by name."
  value       = [for s in local.raw_sources : s.name]
}
