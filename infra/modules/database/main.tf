# Cloud SQL for PostgreSQL on a private IP only, backed up daily with point-in-time
# recovery, protected from deletion, TLS required, IAM database authentication enabled.
variable "project_id" {
  description = "Project of the instance."
  type        = string
}

variable "region" {
  description = "Region of the instance."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the instance name."
  type        = string
}

variable "network" {
  description = "VPC network the instance gets its private IP in."
  type        = string
}

variable "create_private_service_access" {
  description = "Create the private services access range and peering for var.network."
  type        = bool
}

variable "settings" {
  description = "The root module's var.database (all attributes set)."
  type = object({
    version                        = string
    tier                           = string
    availability_type              = string
    disk_size_gb                   = number
    backup_start_time              = string
    retained_backups               = number
    transaction_log_retention_days = number
    deletion_protection            = bool
    max_connections                = number
  })
}

variable "password_version" {
  description = "Bump to roll the database password (see infra/README.md)."
  type        = number
}

locals {
  database = "hookyard"
  user     = "hookyard"
}

resource "google_compute_global_address" "private_services" {
  count         = var.create_private_service_access ? 1 : 0
  project       = var.project_id
  name          = "${var.name_prefix}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = var.network
}

resource "google_service_networking_connection" "private_services" {
  count                   = var.create_private_service_access ? 1 : 0
  network                 = var.network
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services[0].name]
}

resource "google_sql_database_instance" "main" {
  #checkov:skip=CKV_GCP_79:The version is var.database.version, POSTGRES_18 (the newest major, the one the tests run on) unless chosen otherwise; checkov cannot follow an optional() default through the module call.
  project             = var.project_id
  region              = var.region
  name                = "${var.name_prefix}-db"
  database_version    = var.settings.version
  deletion_protection = var.settings.deletion_protection

  settings {
    tier                        = var.settings.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.settings.availability_type
    disk_size                   = var.settings.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.settings.deletion_protection

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network
      # The Cloud SQL connector (and the Auth Proxy, gcloud sql connect) present client
      # certificates: nothing else may connect.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.settings.backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.settings.transaction_log_retention_days
      backup_retention_settings {
        retained_backups = var.settings.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "max_connections"
      value = tostring(var.settings.max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    # Statements are not logged: event payloads would land in Cloud Logging.
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "main" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = local.database
}

# Generated on each run and written only through write-only arguments (Terraform >= 1.11):
# the password is never in the plan or the state. The user and the db-password secret take
# it in the same run, when password_version changes.
ephemeral "random_password" "db" {
  length  = 40
  special = false
}

# The built-in user the migrations and the services connect as (HOOKYARD_DB_USER), with the
# password the code reads from the db-password secret. IAM database authentication is on
# too, for operators' own sessions and per-service database users later.
resource "google_sql_user" "app" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = local.user

  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.password_version
}

output "connection_name" {
  description = "PROJECT:REGION:INSTANCE, for HOOKYARD_CLOUD_SQL_INSTANCE."
  value       = google_sql_database_instance.main.connection_name
}

output "instance_name" {
  description = "The instance's name."
  value       = google_sql_database_instance.main.name
}

output "name" {
  description = "The database's name (HOOKYARD_DB_NAME)."
  value       = google_sql_database.main.name
}

output "user" {
  description = "The database user (HOOKYARD_DB_USER)."
  value       = google_sql_user.app.name
}

output "password" {
  description = "This run's generated password, for the db-password secret (ephemeral: never stored)."
  value       = ephemeral.random_password.db.result
  ephemeral   = true
}
