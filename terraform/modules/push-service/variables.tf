variable "name" {
  description = "Function name (kebab-case; also the Cloud Run service and image name)."
  type        = string
}

variable "project_id" {
  description = "Project the service runs in."
  type        = string
}

variable "project_number" {
  description = "Number of that project; part of the service's deterministic URL, the push token audience."
  type        = string
}

variable "region" {
  description = "Region of the service; europe-west3 only."
  type        = string
  validation {
    condition     = var.region == "europe-west3"
    error_message = "Every resource runs in europe-west3 (DiGA data residency)."
  }
}

variable "image" {
  description = "Container image at first creation; later revisions come from the deployment pipeline."
  type        = string
}

variable "service_account_email" {
  description = "Identity the container runs as."
  type        = string
}

variable "vpc_connector_id" {
  description = "Serverless VPC Access connector for all egress."
  type        = string
}

variable "env" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variables read from Secret Manager: NAME => { secret, version }."
  type = map(object({
    secret  = string
    version = string
  }))
  default = {}
}

variable "secret_files" {
  description = "Secret Manager versions mounted as files: volume name => { secret = secret id, mount_path = directory, versions = version numbers (each becomes a file named by its number) }."
  type = map(object({
    secret     = string
    mount_path = string
    versions   = list(string)
  }))
  default = {}
}

variable "behind_load_balancer" {
  description = "True when the service also serves routes of the external load balancer; the push handler then verifies the OIDC token itself, because Cloud Run's invoker check is off."
  type        = bool
  default     = false
}

variable "subscriptions" {
  description = "Push subscriptions: key => { topic = topic id, dead_letter_topic = topic id, path = push path on the service }."
  type = map(object({
    topic             = string
    dead_letter_topic = string
    path              = string
  }))
}

variable "push_service_account_email" {
  description = "Identity whose OIDC token Pub/Sub attaches to each push."
  type        = string
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message goes to the dead-letter topic."
  type        = number
  default     = 5
}

variable "deletion_protection" {
  description = "Refuse to destroy the service from Terraform."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for the service and its subscriptions."
  type        = map(string)
  default     = {}
}
