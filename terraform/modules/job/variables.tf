variable "name" {
  description = "Function name (kebab-case; also the Cloud Run job and image name)."
  type        = string
}

variable "project_id" {
  description = "Project the job runs in."
  type        = string
}

variable "region" {
  description = "Region of the job; europe-west3 only."
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
  description = "Identity the job runs as."
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

variable "timeout_seconds" {
  description = "Wall-clock limit of one task attempt."
  type        = number
  default     = 3600
}

variable "max_retries" {
  description = "Retries of a failed task within one execution."
  type        = number
  default     = 1
}

variable "cpu" {
  description = "CPU limit of the task."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of the task."
  type        = string
  default     = "1Gi"
}

variable "deletion_protection" {
  description = "Refuse to destroy the job from Terraform."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for the job."
  type        = map(string)
  default     = {}
}
