output "secret_accessors" {
  description = "roles/secretmanager.secretAccessor: secret and member."
  value       = local.secret_accessors
}

output "topic_publishers" {
  description = "roles/pubsub.publisher: topic and member."
  value       = local.topic_publishers
}

output "subscription_subscribers" {
  description = "roles/pubsub.subscriber: subscription and member."
  value       = local.subscription_subscribers
}

output "queue_enqueuers" {
  description = "roles/cloudtasks.enqueuer: queue and member."
  value       = local.queue_enqueuers
}

output "account_roles" {
  description = "Roles on the service accounts themselves: account (by role name), role and member."
  value       = local.account_roles
}

output "project_roles" {
  description = "Project-level roles: role, member and IAM condition (null for none)."
  value       = local.project_roles
}

output "service_invokers" {
  description = "roles/run.invoker: service (target) and member."
  value       = local.service_invokers
}
