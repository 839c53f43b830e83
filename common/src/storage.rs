//! Cloud Storage (gcloud-storage; fake-gcs-server locally).
