variable "project_id" {
  description = "The Google Cloud project everything is created in."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 lower-case letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the services, queues, Scheduler jobs and the database (HOOKYARD_GCP_REGION)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of the services, service accounts and database instance (not of topics, queues or jobs: those are named by topology.yaml, as the code expects)."
  type        = string
  default     = "hookyard"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2-15 lower-case letters, digits or hyphens, starting with a letter (service account ids are limited to 30 characters)."
  }
}

variable "topology_file" {
  description = "The topology the code runs with. Leave the default: the deployed image carries common/topology.yaml, and both must be the same file."
  type        = string
  default     = null
}

variable "image" {
  description = "The one container image (see Dockerfile) every service runs, each with its own TARGET. Pin it by digest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_.-]+)$", var.image))
    error_message = "image must be a full image reference with a tag or, better, a digest (…@sha256:…)."
  }
}

variable "network" {
  description = "VPC network (id or self link) the database gets its private IP in and the services reach it through."
  type        = string
}

variable "subnetwork" {
  description = "Subnetwork in var.region used for the services' Direct VPC egress to the database."
  type        = string
}

variable "create_private_service_access" {
  description = "Reserve a range and peer the network with Google's service producer network (needed once per network for Cloud SQL private IP). Set false if the network already has it."
  type        = bool
  default     = true
}

variable "operators" {
  description = "Emails (people, or service accounts they impersonate) allowed to call the admin service (Cloud Run invoker) and the admin API (HOOKYARD_ADMIN_OPERATORS) with a Google ID token."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.operators : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])
    error_message = "operators must be email addresses."
  }
}

variable "admin_audience" {
  description = "The audience operators' ID tokens carry (HOOKYARD_ADMIN_AUDIENCE). Null: the admin service's URL, what `gcloud auth print-identity-token --impersonate-service-account=SA --audiences=URL --include-email` gives. People using their own gcloud login carry gcloud's OAuth client id instead: set that here."
  type        = string
  default     = null
}

variable "database" {
  description = "Cloud SQL settings. Defaults suit production: PostgreSQL 18 (what the tests run against), regional, backed up daily with point-in-time recovery, protected from deletion."
  type = object({
    version                        = optional(string, "POSTGRES_18")
    tier                           = optional(string, "db-custom-2-7680")
    availability_type              = optional(string, "REGIONAL")
    disk_size_gb                   = optional(number, 20)
    backup_start_time              = optional(string, "02:00")
    retained_backups               = optional(number, 14)
    transaction_log_retention_days = optional(number, 7)
    deletion_protection            = optional(bool, true)
    max_connections                = optional(number, 200)
  })
  default = {}

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.database.availability_type)
    error_message = "database.availability_type must be REGIONAL or ZONAL."
  }
  validation {
    condition     = can(regex("^POSTGRES_(1[4-9])$", var.database.version))
    error_message = "database.version must be POSTGRES_14 or later."
  }
  validation {
    condition     = var.database.transaction_log_retention_days >= 1 && var.database.transaction_log_retention_days <= 7
    error_message = "database.transaction_log_retention_days must be 1 to 7."
  }
  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):00$", var.database.backup_start_time))
    error_message = "database.backup_start_time must be HH:00 (UTC)."
  }
}

variable "scaling" {
  description = "Instances per service. The webhook function keeps one warm so a sender's first delivery is not a cold start."
  type = map(object({
    min_instances = number
    max_instances = number
  }))
  default = {
    webhook = { min_instances = 1, max_instances = 20 }
    cron    = { min_instances = 0, max_instances = 2 }
    admin   = { min_instances = 0, max_instances = 2 }
    worker  = { min_instances = 1, max_instances = 20 }
  }

  validation {
    condition     = alltrue([for k, v in var.scaling : contains(["webhook", "cron", "admin", "worker"], k) && v.min_instances >= 0 && v.max_instances >= max(1, v.min_instances)])
    error_message = "scaling keys are webhook, cron, admin, worker; 0 <= min_instances <= max_instances, max_instances >= 1."
  }
}

variable "log_level" {
  description = "HOOKYARD_LOG_LEVEL of every service."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "metrics_exporter" {
  description = "HOOKYARD_METRICS_EXPORTER of every service: cloud-monitoring, or none (no metrics, no role)."
  type        = string
  default     = "cloud-monitoring"

  validation {
    condition     = contains(["cloud-monitoring", "none"], var.metrics_exporter)
    error_message = "metrics_exporter must be cloud-monitoring or none."
  }
}

variable "traces_exporter" {
  description = "HOOKYARD_TRACES_EXPORTER of every service: cloud-trace, or none (no spans, no role)."
  type        = string
  default     = "cloud-trace"

  validation {
    condition     = contains(["cloud-trace", "none"], var.traces_exporter)
    error_message = "traces_exporter must be cloud-trace or none."
  }
}

variable "traces_sample_ratio" {
  description = "HOOKYARD_TRACES_SAMPLE_RATIO: the share of traces recorded, decided by trace id (a recorded event costs its webhook about 0.16 ms of CPU for two spans, plus Cloud Trace's ingestion)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.traces_sample_ratio >= 0 && var.traces_sample_ratio <= 1
    error_message = "traces_sample_ratio must be between 0 and 1."
  }
}

variable "pubsub_kms_key" {
  description = "Cloud KMS key (id) to encrypt topics with; null keeps Google-managed encryption."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "db_password_version" {
  description = "Version of the generated database password: increase it by one to roll the password (user and db-password secret change in the same apply)."
  type        = number
  default     = 1

  validation {
    condition     = var.db_password_version >= 1 && floor(var.db_password_version) == var.db_password_version
    error_message = "db_password_version must be a whole number, at least 1."
  }
}
