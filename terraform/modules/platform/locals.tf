locals {
  labels = {
    app         = "dta-wide"
    environment = var.environment
  }

  image_base = "${var.region}-docker.pkg.dev/${var.project_id}/dta-wide"

  # Secrets; the secret id is the environment variable name. Five are the design's;
  # RESTORE_CHECK_DATABASE_URL is backup-verification's login to the database it restores on
  # the restore-check instance (a restore brings the source's users along); EMAIL_LOOKUP_KEY
  # keys auth's blind index of e-mail addresses (common::crypto::EmailLookup, >= 32 bytes).
  secret_names = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "EMAIL_LOOKUP_KEY", "RESTORE_CHECK_DATABASE_URL", "OPENAI_API_KEY", "MAILGUN_API_KEY"]

  # Environment every function gets; names match common::config::PlatformConfig.
  # DEPLOY_ENVIRONMENT is read by no code: it names the environment in the revision's config.
  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOG_FORMAT           = "json"
    RUST_LOG             = "info"
    DEPLOY_ENVIRONMENT   = var.environment
  }

  # Older JWT_SECRET versions, mounted as one file per version named by its number
  # (common::auth::JwtKeyFiles): the two before the signing one and, during a rotation, the
  # next one, so that every service accepts a new key before auth signs with it.
  jwt_keys_dir = "/secrets/jwt-previous-keys"
  jwt_versions = [for v in range(max(1, var.jwt_signing_key_version - 2), var.jwt_newest_key_version + 1) : tostring(v)]

  # What a function's `uses` entry adds to its plain environment. Every value is a resource
  # name or a setting, never a credential; credentials are Secret Manager references below.
  #   jwt        access-token verification (common::config::JwtConfig, common::auth::JwtKeyFiles)
  #   pubsub     publishing through the outbox (common::config::PubSubConfig)
  #   firestore  the analysis-log database (FIRESTORE_PROJECT)
  #   kms        wrapping of the users' data keys (common::crypto::KeyConfig); the grant on
  #              the envelope key is in kms.tf
  #   mail       Mailgun's EU API (functions/auth/src/mail.rs); the key is a secret
  uses_env = {
    jwt = {
      JWT_KEY_ID            = tostring(var.jwt_signing_key_version)
      JWT_PREVIOUS_KEYS_DIR = local.jwt_keys_dir
    }
    pubsub    = { PUBSUB_PROJECT = var.project_id }
    firestore = { FIRESTORE_PROJECT = var.project_id }
    kms       = { KMS_KEY_NAME = google_kms_crypto_key.keys["envelope"].id }
    mail = {
      MAILGUN_DOMAIN = var.mailgun_domain
      MAIL_FROM      = var.mail_from
      APP_LINK_BASE  = var.app_link_base
    }
  }

  # HTTPS functions behind the load balancer. paths: URL map path rules.
  # secrets: env var names read from Secret Manager. OPENAI_API_KEY is given to no function
  # until the data-protection officer approves a use that keeps health data in the EU.
  # uses: see uses_env above.
  http_services = {
    auth = {
      paths   = ["/v1/auth/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "MAILGUN_API_KEY", "EMAIL_LOOKUP_KEY"]
      uses    = ["jwt", "kms", "mail"]
    }
    sleep-diary = {
      paths   = ["/v1/sleep-logs", "/v1/sleep-logs/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
      uses    = ["jwt", "pubsub", "kms"]
    }
    log-ingestion = {
      paths   = ["/v1/imports/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
      uses    = ["jwt", "pubsub"]
    }
    questionnaire-scoring = {
      paths   = ["/v1/questionnaires", "/v1/questionnaires/*", "/v1/questionnaire-responses", "/v1/questionnaire-responses/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
      uses    = ["jwt", "pubsub"]
    }
  }

  # Pub/Sub push functions. Their public routes (if any) also go through the load balancer.
  # path: the route the service serves pushes on; the module adds PUSH_AUDIENCE and
  # PUSH_SERVICE_ACCOUNT, which the service checks every push's OIDC token against.
  push_services = {
    sleep-analysis = {
      paths   = ["/v1/sleep-window"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
      uses    = ["jwt", "firestore", "pubsub"]
      subscriptions = {
        sleep-log = { topic = "sleep-log", path = "/pubsub/push" }
      }
    }
    # An erasure also rewrites the archive chunks that hold the user's documents; audit
    # events arrive by push and enter the hash-chained audit trail.
    privacy = {
      paths   = ["/v1/me", "/v1/me/*"]
      secrets = ["DATABASE_URL", "REDIS_URL", "JWT_SECRET"]
      uses    = ["jwt", "firestore", "kms"]
      env     = { ARCHIVE_BUCKET = google_storage_bucket.archive.name }
      subscriptions = {
        audit = { topic = "audit", path = "/pubsub/audit" }
      }
    }
  }

  # Cloud Run jobs. Scheduled ones are started by scheduler/*.yaml.
  jobs = {
    migrate = {
      secrets         = ["DATABASE_URL"]
      uses            = []
      timeout_seconds = 900
      max_retries     = 0
    }
    # On Cloud SQL (SQL_INSTANCE): checks the managed backups and PITR, restores the newest
    # backup run into RESTORE_CHECK_INSTANCE (sql.tf; the only instance it may restore into)
    # and compares the restored database (RESTORE_CHECK_DATABASE_URL) with the source.
    # BACKUP_BUCKET is where the dump-and-restore drill writes when SQL_INSTANCE is unset.
    backup-verification = {
      secrets         = ["DATABASE_URL", "RESTORE_CHECK_DATABASE_URL"]
      uses            = []
      timeout_seconds = 3600
      max_retries     = 1
      env = {
        SQL_INSTANCE           = google_sql_database_instance.main.name
        RESTORE_CHECK_INSTANCE = google_sql_database_instance.restore_check.name
        BACKUP_BUCKET          = google_storage_bucket.backups.name
      }
    }
    # Also archives the audit trail (audit_log) past its hot window, hence DATABASE_URL.
    log-archiver = {
      secrets         = ["DATABASE_URL"]
      uses            = []
      timeout_seconds = 3600
      max_retries     = 1
      env = {
        ARCHIVE_BUCKET = google_storage_bucket.archive.name
      }
    }
    # Erases inactive accounts through privacy's erasure walker, archive chunks included.
    retention = {
      secrets         = ["DATABASE_URL", "REDIS_URL"]
      uses            = ["firestore", "kms"]
      timeout_seconds = 1800
      max_retries     = 1
      env = {
        ARCHIVE_BUCKET = google_storage_bucket.archive.name
      }
    }
  }

  # The environment of each function: the common part, what its uses add, its own.
  function_env = {
    for name, f in merge(local.http_services, local.push_services, local.jobs) :
    name => merge(local.common_env, merge([for u in f.uses : local.uses_env[u]]...), try(f.env, {}))
  }

  # Secret references of each function. JWT_SECRET is pinned to the signing version (its
  # number is JWT_KEY_ID); every other secret follows its latest version.
  function_secrets = {
    for name, f in merge(local.http_services, local.push_services, local.jobs) :
    name => {
      for s in f.secrets : s => {
        secret  = google_secret_manager_secret.app[s].secret_id
        version = s == "JWT_SECRET" ? tostring(var.jwt_signing_key_version) : "latest"
      }
    }
  }

  # Secret files of each function: the older JWT keys wherever tokens are verified.
  function_secret_files = {
    for name, f in merge(local.http_services, local.push_services, local.jobs) :
    name => contains(f.uses, "jwt") ? {
      jwt-previous-keys = {
        secret     = google_secret_manager_secret.app["JWT_SECRET"].secret_id
        mount_path = local.jwt_keys_dir
        versions   = local.jwt_versions
      }
    } : {}
  }

  # Every function behind the load balancer, with its URL map paths.
  lb_routes = merge(
    { for name, svc in local.http_services : name => svc.paths },
    { for name, svc in local.push_services : name => svc.paths },
  )

  topics = ["sleep-log", "questionnaire", "safety", "audit"]
}
