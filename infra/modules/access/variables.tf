variable "topology" {
  description = "modules/topology's outputs."
  type        = any
}

variable "accounts" {
  description = "Service account emails by role: webhook, cron, admin, worker, migrate, push, tasks, scheduler."
  type        = map(string)

  validation {
    condition     = length(setsubtract(["webhook", "cron", "admin", "worker", "migrate", "push", "tasks", "scheduler"], keys(var.accounts))) == 0
    error_message = "accounts must name all eight roles."
  }
}

variable "project_id" {
  description = "Project of the resources."
  type        = string
}

variable "project_number" {
  description = "Project number: names the Pub/Sub service agent."
  type        = string
}

variable "database_instance" {
  description = "Name of the Cloud SQL instance the database roles are limited to."
  type        = string
}

variable "telemetry" {
  description = "Which telemetry the four targets write: metrics to Cloud Monitoring, spans to Cloud Trace."
  type        = object({ metrics = bool, traces = bool })
  default     = { metrics = true, traces = true }
}

variable "operators" {
  description = "Emails of the operators allowed to invoke the admin service."
  type        = list(string)
  default     = []
}
