variable "topology_file" {
  description = "Path of common/topology.yaml, the file the Python code loads: one source of truth for both."
  type        = string

  validation {
    condition     = fileexists(var.topology_file)
    error_message = "topology_file must name an existing file (common/topology.yaml)."
  }
}

variable "worker_url" {
  description = "The worker's base URL: push endpoints and Cloud Tasks targets start with it, and it is the audience of push and task tokens."
  type        = string
  default     = "https://worker.invalid"
}

variable "cron_url" {
  description = "The cron function's base URL, which Cloud Scheduler calls."
  type        = string
  default     = "https://cron.invalid"
}

variable "cron_audience" {
  description = "Audience of Cloud Scheduler's OIDC tokens (HOOKYARD_CRON_AUDIENCE)."
  type        = string
  default     = "https://cron.invalid"
}

variable "push_service_account" {
  description = "Email of the account whose OIDC token Pub/Sub push presents (HOOKYARD_PUSH_SERVICE_ACCOUNT)."
  type        = string
  default     = "push@example.invalid"
}

variable "scheduler_service_account" {
  description = "Email of the account whose OIDC token Cloud Scheduler presents (HOOKYARD_SCHEDULER_SERVICE_ACCOUNT)."
  type        = string
  default     = "scheduler@example.invalid"
}
