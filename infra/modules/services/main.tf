# One Cloud Run service per functions-framework target, all from one image (TARGET picks the
# function), each with its own service account and only the settings it reads; the
# migration job runs the same image. Who may invoke each service comes from modules/access.
variable "project_id" {
  description = "Project of the services."
  type        = string
}

variable "region" {
  description = "Region of the services."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the service names; must match the URLs in var.service_url."
  type        = string
}

variable "image" {
  description = "The image every service runs."
  type        = string
}

variable "network" {
  description = "VPC network the database is reached through (Direct VPC egress)."
  type        = string
}

variable "subnetwork" {
  description = "Subnetwork for Direct VPC egress."
  type        = string
}

variable "scaling" {
  description = "Instances per target."
  type        = map(object({ min_instances = number, max_instances = number }))
}

variable "accounts" {
  description = "Service account emails by role (modules/identities)."
  type        = map(string)
}

variable "service_url" {
  description = "Each target's URL, as Cloud Run will assign it."
  type        = map(string)
}

variable "env" {
  description = "Every HOOKYARD_* setting; each target receives only those in local.reads."
  type        = map(string)
}

variable "invokers" {
  description = "modules/access's service_invokers: who may invoke which service."
  type        = any
}

locals {
  common = [
    "HOOKYARD_GCP_PROJECT", "HOOKYARD_GCP_REGION", "HOOKYARD_LOG_LEVEL",
    "HOOKYARD_METRICS_EXPORTER", "HOOKYARD_TRACES_EXPORTER", "HOOKYARD_TRACES_SAMPLE_RATIO",
  ]
  database = [
    "HOOKYARD_CLOUD_SQL_INSTANCE", "HOOKYARD_CLOUD_SQL_IP_TYPE", "HOOKYARD_DB_USER", "HOOKYARD_DB_NAME",
  ]
  enqueues = ["HOOKYARD_WORKER_URL", "HOOKYARD_TASKS_SERVICE_ACCOUNT"]

  # What each target reads (common/config.py), and how it is reached.
  targets = {
    webhook = {
      reads    = local.common
      ingress  = "INGRESS_TRAFFIC_ALL"
      database = false
      timeout  = 30
    }
    cron = {
      reads = concat(local.common, local.enqueues, [
        "HOOKYARD_SCHEDULER_SERVICE_ACCOUNT", "HOOKYARD_CRON_AUDIENCE",
      ])
      # Cloud Scheduler in the same project counts as internal traffic.
      ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      database = false
      timeout  = 60
    }
    admin = {
      reads = concat(local.common, local.database, local.enqueues, [
        "HOOKYARD_ADMIN_OPERATORS", "HOOKYARD_ADMIN_AUDIENCE",
      ])
      # Operators call it from their machines, with a Google identity Cloud Run checks first.
      ingress  = "INGRESS_TRAFFIC_ALL"
      database = true
      timeout  = 300
    }
    worker = {
      reads = concat(local.common, local.database, local.enqueues, [
        "HOOKYARD_PUSH_SERVICE_ACCOUNT",
      ])
      # Pub/Sub push and Cloud Tasks in the same project count as internal traffic.
      ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      database = true
      timeout  = 600
    }
  }
}

resource "google_cloud_run_v2_service" "target" {
  for_each            = local.targets
  project             = var.project_id
  location            = var.region
  name                = "${var.name_prefix}-${each.key}"
  ingress             = each.value.ingress
  deletion_protection = false

  template {
    service_account                  = var.accounts[each.key]
    timeout                          = "${each.value.timeout}s"
    max_instance_request_concurrency = 80

    scaling {
      min_instance_count = var.scaling[each.key].min_instances
      max_instance_count = var.scaling[each.key].max_instances
    }

    dynamic "vpc_access" {
      for_each = each.value.database ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.network
          subnetwork = var.subnetwork
        }
      }
    }

    containers {
      image = var.image

      env {
        name  = "TARGET"
        value = each.key
      }
      dynamic "env" {
        for_each = { for name in each.value.reads : name => var.env[name] }
        content {
          name  = env.key
          value = env.value
        }
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle = true
      }

      # The worker answers /health/ready only when its database is reachable and migrated:
      # a revision that cannot serve never takes traffic.
      dynamic "startup_probe" {
        for_each = each.key == "worker" ? [1] : []
        content {
          http_get {
            path = "/health/ready"
          }
          period_seconds    = 5
          failure_threshold = 24
        }
      }
      dynamic "liveness_probe" {
        for_each = each.key == "worker" ? [1] : []
        content {
          http_get {
            path = "/health/live"
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = "https://${var.name_prefix}-${each.key}-" == substr(var.service_url[each.key], 0, length("https://${var.name_prefix}-${each.key}-"))
      error_message = "service_url must be the service's own Cloud Run URL."
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = var.invokers
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.target[each.value.service].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Run before each release: `gcloud run jobs execute <prefix>-migrate --wait`.
resource "google_cloud_run_v2_job" "migrate" {
  project             = var.project_id
  location            = var.region
  name                = "${var.name_prefix}-migrate"
  deletion_protection = false

  template {
    task_count = 1
    template {
      service_account = var.accounts["migrate"]
      max_retries     = 0
      timeout         = "900s"

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.network
          subnetwork = var.subnetwork
        }
      }

      containers {
        image   = var.image
        command = ["python"]
        args    = ["-m", "common.db.migrate"]
        dynamic "env" {
          for_each = { for name in concat(local.common, local.database) : name => var.env[name] }
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }
}

output "urls" {
  description = "Each service's URL."
  value       = { for name, s in google_cloud_run_v2_service.target : name => s.uri }
}

output "names" {
  description = "Each service's name."
  value       = { for name, s in google_cloud_run_v2_service.target : name => s.name }
}

output "migrate_job" {
  description = "The migration job's name."
  value       = google_cloud_run_v2_job.migrate.name
}
