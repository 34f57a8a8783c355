output "service_urls" {
  description = "Each target's URL. Senders post to webhook's /webhooks/{source}; operators call admin's /admin."
  value       = module.services.urls
}

output "webhook_endpoints" {
  description = "The URL to give each sender."
  value       = { for name in module.topology.source_names : name => "${module.services.urls["webhook"]}/webhooks/${name}" }
}

output "service_accounts" {
  description = "Service account emails by role."
  value       = module.identities.emails
}

output "database_connection_name" {
  description = "PROJECT:REGION:INSTANCE of the Cloud SQL instance."
  value       = module.database.connection_name
}

output "migrate_job" {
  description = "Run before each release: gcloud run jobs execute <this> --region <region> --wait."
  value       = module.services.migrate_job
}

output "topics" {
  description = "Topic ids by name."
  value       = module.messaging.topic_ids
}

output "subscriptions" {
  description = "Subscription ids by name, push and pull."
  value       = merge(module.messaging.push_subscription_ids, module.messaging.pull_subscription_ids)
}

output "queues" {
  description = "Cloud Tasks queue ids by name."
  value       = module.tasks.queue_ids
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids by name."
  value       = module.scheduler.job_ids
}

output "secrets" {
  description = "Secret ids by name. Add values with gcloud secrets versions add (see infra/README.md)."
  value       = module.secrets.secret_ids
}
