# Topics and subscriptions exactly as modules/topology renders them from topology.yaml.
variable "project_id" {
  description = "Project of the topics and subscriptions."
  type        = string
}

variable "topics" {
  description = "Topic names."
  type        = list(string)
}

variable "push_subscriptions" {
  description = "google_push_subscriptions of modules/topology, by name."
  type        = any
}

variable "pull_subscriptions" {
  description = "google_pull_subscriptions of modules/topology, by name."
  type        = any
}

variable "kms_key" {
  description = "Cloud KMS key for the topics, or null for Google-managed encryption."
  type        = string
  default     = null
}

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Encryption with a customer-managed key is opt-in through var.pubsub_kms_key; Google-managed encryption is the default, as for the rest of the project.
  for_each     = toset(var.topics)
  project      = var.project_id
  name         = each.value
  kms_key_name = var.kms_key
}

resource "google_pubsub_subscription" "push" {
  for_each                   = var.push_subscriptions
  project                    = var.project_id
  name                       = each.value.name
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  filter                     = each.value.filter
  enable_message_ordering    = each.value.enable_message_ordering
  message_retention_duration = each.value.message_retention_duration

  # Never expire: a quiet source must not lose its subscription.
  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = each.value.push_endpoint
    oidc_token {
      service_account_email = each.value.oidc_service_account_email
      audience              = each.value.oidc_audience
    }
  }

  dynamic "retry_policy" {
    for_each = each.value.retry_policy == null ? [] : [each.value.retry_policy]
    content {
      minimum_backoff = retry_policy.value.minimum_backoff
      maximum_backoff = retry_policy.value.maximum_backoff
    }
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter_policy == null ? [] : [each.value.dead_letter_policy]
    content {
      dead_letter_topic     = google_pubsub_topic.topic[dead_letter_policy.value.dead_letter_topic].id
      max_delivery_attempts = dead_letter_policy.value.max_delivery_attempts
    }
  }
}

resource "google_pubsub_subscription" "pull" {
  for_each                   = var.pull_subscriptions
  project                    = var.project_id
  name                       = each.value.name
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = each.value.message_retention_duration

  expiration_policy {
    ttl = ""
  }
}

output "topic_ids" {
  description = "Topic ids by name."
  value       = { for name, t in google_pubsub_topic.topic : name => t.id }
}

output "push_subscription_ids" {
  description = "Push subscription ids by name."
  value       = { for name, s in google_pubsub_subscription.push : name => s.id }
}

output "pull_subscription_ids" {
  description = "Pull subscription ids by name."
  value       = { for name, s in google_pubsub_subscription.pull : name => s.id }
}
