//! Configuration pieces parsed once from the environment (clap `env = ...`).
//!
//! Each function's `Config` flattens the pieces it needs. Secrets are `SecretString`, whose
//! `Debug` prints `[REDACTED]`, so a config can be logged without leaking them.

use clap::{Args, ValueEnum};
use secrecy::SecretString;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON on Cloud Run (when `K_SERVICE` or `CLOUD_RUN_JOB` is set), text otherwise.
    Auto,
    /// Cloud Logging JSON lines.
    Json,
    /// Human-readable text.
    Text,
}

/// What every Cloud Run service and job reads.
#[derive(Debug, Clone, Args)]
pub struct PlatformConfig {
    /// Cloud Run service name (set by Cloud Run).
    #[arg(long, env = "K_SERVICE")]
    pub k_service: Option<String>,
    /// Cloud Run revision (set by Cloud Run).
    #[arg(long, env = "K_REVISION")]
    pub k_revision: Option<String>,
    /// Cloud Run job name (set by Cloud Run jobs).
    #[arg(long, env = "CLOUD_RUN_JOB")]
    pub cloud_run_job: Option<String>,
    /// Google Cloud project id; used to build Cloud Trace resource names in logs.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub project: Option<String>,
    /// Log format: auto, json or text.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

impl PlatformConfig {
    /// Whether logs should be Cloud Logging JSON.
    pub fn json_logs(&self) -> bool {
        match self.log_format {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => self.k_service.is_some() || self.cloud_run_job.is_some(),
        }
    }
}

/// HTTP serving.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Port to listen on, on 0.0.0.0 (Cloud Run injects PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    /// Per-request timeout in seconds; a slower request is answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT (Cloud Run allows 10).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 8)]
    pub shutdown_grace_secs: u64,
}

/// PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// Connection URL; for Cloud SQL's unix socket: `postgres:///db?host=/cloudsql/PROJECT:REGION:INSTANCE&user=U&password=P`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: SecretString,
    /// Maximum pool size.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// Seconds to wait for the first connection before giving up with the real cause.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub db_connect_timeout_secs: u64,
}

/// Access-token verification (every data route).
#[derive(Debug, Clone, Args)]
pub struct JwtConfig {
    /// Current HS256 signing key (Secret Manager JWT_SECRET, latest version).
    #[arg(long, env = "JWT_SECRET")]
    pub jwt_secret: SecretString,
    /// Key id (`kid`) of JWT_SECRET; Secret Manager's version number in production.
    #[arg(long, env = "JWT_KEY_ID", default_value = "1")]
    pub jwt_key_id: String,
    /// Older key versions still accepted for verification, as `kid=secret` separated by whitespace.
    #[arg(long, env = "JWT_PREVIOUS_KEYS")]
    pub jwt_previous_keys: Option<SecretString>,
    /// Expected `iss`.
    #[arg(long, env = "JWT_ISSUER", default_value = "dta-wide-auth")]
    pub jwt_issuer: String,
    /// Expected `aud`.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "dta-wide-api")]
    pub jwt_audience: String,
    /// Clock-skew leeway in seconds for `exp`/`nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
}

/// Publishing to Pub/Sub (through the outbox).
#[derive(Debug, Clone, Args)]
pub struct PubSubConfig {
    /// Project whose topics events go to.
    #[arg(
        long = "pubsub-project",
        env = "PUBSUB_PROJECT",
        default_value = "dta-wide-local"
    )]
    pub pubsub_project: String,
    /// `host:port` of the Pub/Sub emulator; unset in production.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
    /// Milliseconds between outbox drains when idle.
    #[arg(long, env = "OUTBOX_INTERVAL_MS", default_value_t = 200)]
    pub outbox_interval_ms: u64,
}
