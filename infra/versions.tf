terraform {
  # Write-only arguments keep the generated database password out of plans and state.
  required_version = ">= 1.11"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Write-only password_wo / secret_data_wo, Cloud Run v2 Direct VPC egress, Cloud SQL
      # ssl_mode. Upgrade deliberately: read the provider's upgrade guide first.
      version = "~> 7.45"
    }
    random = {
      source = "hashicorp/random"
      # ephemeral "random_password"
      version = "~> 3.7"
    }
  }
}
