variable "name" {
  description = "Function name: kebab-case, the same as the binary, the image and the Terraform key."
  type        = string
}

variable "project_id" {
  description = "Project the service runs in."
  type        = string
}

variable "region" {
  description = "Region of the service; the design allows europe-west3 only."
  type        = string
  validation {
    condition     = var.region == "europe-west3"
    error_message = "Every resource runs in europe-west3 (DiGA data residency)."
  }
}

variable "image" {
  description = "Container image at first creation; later revisions are rolled out by the deployment pipeline."
  type        = string
}

variable "service_account_email" {
  description = "Identity the container runs as."
  type        = string
}

variable "vpc_connector_id" {
  description = "Serverless VPC Access connector; all egress leaves through it (Cloud NAT static IP)."
  type        = string
}

variable "env" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variables read from Secret Manager: NAME => { secret = secret id, version = version or \"latest\" }."
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
  description = "True when the external HTTPS load balancer (Cloud Armor) fronts the service: the Cloud Run invoker check is then off and the service authenticates callers itself."
  type        = bool
  default     = true
}

variable "min_instances" {
  description = "Minimum warm instances."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Upper bound on instances."
  type        = number
  default     = 100
}

variable "concurrency" {
  description = "Concurrent requests per instance."
  type        = number
  default     = 80
}

variable "cpu" {
  description = "CPU limit per instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit per instance."
  type        = string
  default     = "512Mi"
}

variable "deletion_protection" {
  description = "Refuse to destroy the service from Terraform."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for the service."
  type        = map(string)
  default     = {}
}
