# One Secret Manager secret per name the code reads (topology.yaml's secrets and each
# source's webhook secret). Values are added by operators (`gcloud secrets versions add`),
# never through Terraform, except the database password, which Terraform generates because
# it also sets it on the database user (write-only: it never enters the state). Access is granted per secret in modules/iam.
variable "project_id" {
  description = "Project of the secrets."
  type        = string
}

variable "secrets" {
  description = "Secret names, as the code reads them."
  type        = list(string)
}

variable "db_password" {
  description = "The database user's generated password (ephemeral), for db-password."
  type        = string
  ephemeral   = true
}

variable "db_password_version" {
  description = "The password's version: a new one adds a new secret version."
  type        = number
}

resource "google_secret_manager_secret" "secret" {
  for_each  = toset(var.secrets)
  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db_password" {
  secret = google_secret_manager_secret.secret["db-password"].id

  secret_data_wo         = var.db_password
  secret_data_wo_version = var.db_password_version
}

output "secret_ids" {
  description = "Secret ids by name."
  value       = { for name, s in google_secret_manager_secret.secret : name => s.id }
}
