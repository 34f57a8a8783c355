# Every IAM binding Hookyard needs, as data: who gets which role on which resource. No
# provider, so tests/infra evaluates it offline and checks it against what the code does
# (which secrets it reads, which topics it publishes to, which queues it fills);
# modules/iam and modules/services only create what is listed here. Least privilege: each
# grant is on the one resource the role is needed for, never project-wide, except the
# roles Google offers only on projects (Cloud SQL: conditioned on the instance; Monitoring;
# Cloud Trace).

locals {
  sa           = { for role, email in var.accounts : role => "serviceAccount:${email}" }
  pubsub_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  targets      = ["webhook", "cron", "admin", "worker"]

  # Names the code reads them by (common/db/engine.py, functions/admin.py,
  # workers/notifications.py, functions/webhooks.py via each source's `secret`).
  db_password = "db-password"
  admin_token = "admin-token"
  signing_key = "notify-signing-key"

  secret_accessors = merge(
    { for name in var.topology.source_secrets : "webhook/${name}" => { secret = name, member = local.sa["webhook"] } },
    {
      "admin/${local.admin_token}"   = { secret = local.admin_token, member = local.sa["admin"] }
      "admin/${local.db_password}"   = { secret = local.db_password, member = local.sa["admin"] }
      "worker/${local.signing_key}"  = { secret = local.signing_key, member = local.sa["worker"] }
      "worker/${local.db_password}"  = { secret = local.db_password, member = local.sa["worker"] }
      "migrate/${local.db_password}" = { secret = local.db_password, member = local.sa["migrate"] }
    },
  )

  # Ingest publishes to the sources' topics and so do the admin's resends; the worker's
  # replays and handlers' messages go to any topic but a dead-letter one; only the Pub/Sub
  # service agent moves messages into dead-letter topics.
  topic_publishers = merge(
    { for t in var.topology.source_topics : "webhook/${t}" => { topic = t, member = local.sa["webhook"] } },
    { for t in var.topology.source_topics : "admin/${t}" => { topic = t, member = local.sa["admin"] } },
    { for t in var.topology.publish_topics : "worker/${t}" => { topic = t, member = local.sa["worker"] } },
    { for t in var.topology.dead_letter_topics : "pubsub-agent/${t}" => { topic = t, member = local.pubsub_agent } },
  )

  # The service agent acknowledges a message on the subscription it dead-letters from.
  subscription_subscribers = {
    for name, s in var.topology.subscriptions :
    "pubsub-agent/${name}" => { subscription = name, member = local.pubsub_agent } if s.dead_letter_policy != null
  }

  # cron creates the jobs' tasks, admin the first batch of a replay, the worker the rest
  # (notifications, statements, replay batches, jobs' follow-ups).
  queue_enqueuers = merge(
    { "cron/jobs" = { queue = "jobs", member = local.sa["cron"] } },
    { "admin/replays" = { queue = "replays", member = local.sa["admin"] } },
    { for q in keys(var.topology.queues) : "worker/${q}" => { queue = q, member = local.sa["worker"] } },
  )

  # Bindings on service accounts themselves: whoever creates a task acts as the tasks account
  # (its OIDC token rides on the task); the Pub/Sub agent mints the push account's tokens
  # (needed in projects created before April 2021, harmless after).
  account_roles = merge(
    {
      for role in ["cron", "admin", "worker"] : "${role}/tasks" => {
        account = "tasks", role = "roles/iam.serviceAccountUser", member = local.sa[role]
      }
    },
    {
      "pubsub-agent/push" = {
        account = "push", role = "roles/iam.serviceAccountTokenCreator", member = local.pubsub_agent
      }
    },
  )

  database_only = {
    title      = "hookyard-database-only"
    expression = "resource.type == \"sqladmin.googleapis.com/Instance\" && resource.name == \"projects/${var.project_id}/instances/${var.database_instance}\""
  }
  project_roles = merge(
    { for role in ["admin", "worker", "migrate"] : "${role}/cloudsql.client" => { role = "roles/cloudsql.client", member = local.sa[role], condition = local.database_only } },
    { for role in ["admin", "worker", "migrate"] : "${role}/cloudsql.instanceUser" => { role = "roles/cloudsql.instanceUser", member = local.sa[role], condition = local.database_only } },
    # /admin/stats reads backlog and oldest-unacked age from Cloud Monitoring.
    { "admin/monitoring.viewer" = { role = "roles/monitoring.viewer", member = local.sa["admin"], condition = null } },
    # The targets write their own metrics and spans (HOOKYARD_METRICS_EXPORTER, _TRACES_EXPORTER).
    { for role in local.targets : "${role}/monitoring.metricWriter" => { role = "roles/monitoring.metricWriter", member = local.sa[role], condition = null } if var.telemetry.metrics },
    { for role in local.targets : "${role}/cloudtrace.agent" => { role = "roles/cloudtrace.agent", member = local.sa[role], condition = null } if var.telemetry.traces },
  )

  # Only the webhook function is public: senders sign their requests instead.
  service_invokers = merge(
    { "webhook/allUsers" = { service = "webhook", member = "allUsers" } },
    { "worker/push" = { service = "worker", member = local.sa["push"] } },
    { "worker/tasks" = { service = "worker", member = local.sa["tasks"] } },
    { "cron/scheduler" = { service = "cron", member = local.sa["scheduler"] } },
    {
      for email in var.operators : "admin/${email}" => {
        service = "admin"
        member  = endswith(email, ".gserviceaccount.com") ? "serviceAccount:${email}" : "user:${email}"
      }
    },
  )
}
