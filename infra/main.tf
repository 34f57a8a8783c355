# Hookyard on Google Cloud. Every topic, subscription, queue, Scheduler job and secret comes
# from common/topology.yaml through modules/topology, the same file the code loads, so the
# two cannot drift (tests/infra checks it). Services: one Cloud Run service per
# functions-framework target, all from one image, each with its own service account.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  topology_file = coalesce(var.topology_file, "${path.root}/../common/topology.yaml")

  # Cloud Run's deterministic URLs: known before the services exist, so a service's
  # settings can name another's URL (and its own) without a dependency cycle.
  service_url = {
    for target in ["webhook", "cron", "admin", "worker"] :
    target => "https://${var.name_prefix}-${target}-${data.google_project.this.number}.${var.region}.run.app"
  }
}

module "apis" {
  source     = "./modules/apis"
  project_id = var.project_id
}

module "topology" {
  source                    = "./modules/topology"
  topology_file             = local.topology_file
  worker_url                = local.service_url["worker"]
  cron_url                  = local.service_url["cron"]
  cron_audience             = local.service_url["cron"]
  push_service_account      = module.identities.emails["push"]
  scheduler_service_account = module.identities.emails["scheduler"]
}

module "identities" {
  source      = "./modules/identities"
  project_id  = var.project_id
  name_prefix = var.name_prefix
  depends_on  = [module.apis]
}

module "messaging" {
  source             = "./modules/messaging"
  project_id         = var.project_id
  topics             = module.topology.topics
  push_subscriptions = module.topology.google_push_subscriptions
  pull_subscriptions = module.topology.google_pull_subscriptions
  kms_key            = var.pubsub_kms_key
  depends_on         = [module.apis]
}

module "tasks" {
  source     = "./modules/tasks"
  project_id = var.project_id
  region     = var.region
  queues     = module.topology.google_queues
  depends_on = [module.apis]
}

module "scheduler" {
  source     = "./modules/scheduler"
  project_id = var.project_id
  region     = var.region
  jobs       = module.topology.google_scheduler_jobs
  # A job must not fire before the service it calls, and the account it acts as, exist.
  depends_on = [module.services, module.iam]
}

module "secrets" {
  source              = "./modules/secrets"
  project_id          = var.project_id
  secrets             = module.topology.secrets
  db_password         = module.database.password
  db_password_version = var.db_password_version
  depends_on          = [module.apis]
}

module "database" {
  source                        = "./modules/database"
  project_id                    = var.project_id
  region                        = var.region
  name_prefix                   = var.name_prefix
  network                       = var.network
  create_private_service_access = var.create_private_service_access
  settings                      = var.database
  password_version              = var.db_password_version
  depends_on                    = [module.apis]
}

module "services" {
  source      = "./modules/services"
  project_id  = var.project_id
  invokers    = module.access.service_invokers
  region      = var.region
  name_prefix = var.name_prefix
  image       = var.image
  network     = var.network
  subnetwork  = var.subnetwork
  scaling     = var.scaling
  accounts    = module.identities.emails
  service_url = local.service_url
  env = {
    HOOKYARD_GCP_PROJECT               = var.project_id
    HOOKYARD_GCP_REGION                = var.region
    HOOKYARD_LOG_LEVEL                 = var.log_level
    HOOKYARD_METRICS_EXPORTER          = var.metrics_exporter
    HOOKYARD_TRACES_EXPORTER           = var.traces_exporter
    HOOKYARD_TRACES_SAMPLE_RATIO       = tostring(var.traces_sample_ratio)
    HOOKYARD_WORKER_URL                = local.service_url["worker"]
    HOOKYARD_CRON_AUDIENCE             = local.service_url["cron"]
    HOOKYARD_ADMIN_AUDIENCE            = coalesce(var.admin_audience, local.service_url["admin"])
    HOOKYARD_ADMIN_OPERATORS           = jsonencode(var.operators)
    HOOKYARD_PUSH_SERVICE_ACCOUNT      = module.identities.emails["push"]
    HOOKYARD_TASKS_SERVICE_ACCOUNT     = module.identities.emails["tasks"]
    HOOKYARD_SCHEDULER_SERVICE_ACCOUNT = module.identities.emails["scheduler"]
    HOOKYARD_CLOUD_SQL_INSTANCE        = module.database.connection_name
    HOOKYARD_CLOUD_SQL_IP_TYPE         = "private"
    HOOKYARD_DB_USER                   = module.database.user
    HOOKYARD_DB_NAME                   = module.database.name
  }
  # A revision must find its secrets and roles in place when it first starts.
  depends_on = [module.apis, module.iam, module.secrets]
}

module "access" {
  source            = "./modules/access"
  topology          = module.topology
  accounts          = module.identities.emails
  project_id        = var.project_id
  project_number    = data.google_project.this.number
  database_instance = module.database.instance_name
  operators         = var.operators
  telemetry         = { metrics = var.metrics_exporter != "none", traces = var.traces_exporter != "none" }
}

module "iam" {
  source           = "./modules/iam"
  project_id       = var.project_id
  region           = var.region
  access           = module.access
  account_ids      = module.identities.ids
  topic_ids        = module.messaging.topic_ids
  subscription_ids = module.messaging.push_subscription_ids
  queue_ids        = module.tasks.queue_ids
  secret_ids       = module.secrets.secret_ids
}
