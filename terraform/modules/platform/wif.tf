# Workload Identity Federation for the deployment pipeline: GitHub's OIDC token becomes ci-cd,
# with no JSON key anywhere. Only a job of this repository that runs in the GitHub environment
# named like this one (the token's subject "repo:OWNER/NAME:environment:ENV") may exchange it,
# so production credentials exist only inside the approved production deploy job.
resource "google_iam_workload_identity_pool" "github" {
  workload_identity_pool_id = "github-${var.environment}"
  project                   = var.project_id
  display_name              = "GitHub Actions"
}

resource "google_iam_workload_identity_pool_provider" "github" {
  #checkov:skip=CKV_GCP_125:the condition pins the sub claim to repo:OWNER/NAME:environment:ENV plus ref main; checkov cannot see that because both parts are module variables
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github"
  project                            = var.project_id
  display_name                       = "GitHub OIDC"
  attribute_condition                = "assertion.sub == \"repo:${var.github_repository}:environment:${var.environment}\" && assertion.ref == \"refs/heads/main\""

  attribute_mapping = {
    "google.subject"        = "assertion.sub"
    "attribute.repository"  = "assertion.repository"
    "attribute.ref"         = "assertion.ref"
    "attribute.environment" = "assertion.environment"
  }

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

resource "google_service_account_iam_member" "ci_cd_workload_identity" {
  service_account_id = google_service_account.ci_cd.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.github.name}/attribute.repository/${var.github_repository}"
}
