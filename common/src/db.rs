//! The PostgreSQL pool (sqlx) with a connect pre-flight, and the migrations of `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DbConfig;

/// The schema migrations, applied only by the `migrate` job (and by tests).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Why the database could not be reached at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// DATABASE_URL cannot be parsed; the URL itself is not repeated (it holds the password).
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    Url(String),
    /// The first connection failed; the message is the server's or the socket's.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
}

/// Opens the pool and proves one connection works, failing within the connect timeout.
///
/// A Cloud SQL unix socket is given as `postgres:///db?host=/cloudsql/PROJECT:REGION:INSTANCE&user=U&password=P`.
pub async fn connect(config: &DbConfig) -> Result<PgPool, DbError> {
    let url = config.database_url.expose_secret();
    let options =
        PgConnectOptions::from_str(url).map_err(|e| DbError::Url(redact(&e.to_string(), url)))?;
    connect_with(
        options,
        config.db_max_connections,
        Duration::from_secs(config.db_connect_timeout_secs),
    )
    .await
}

/// Same as [`connect`] from parsed options.
pub async fn connect_with(
    options: PgConnectOptions,
    max_connections: u32,
    timeout: Duration,
) -> Result<PgPool, DbError> {
    use sqlx::Connection as _;
    // The pre-flight: one direct connection, so the error is the server's or the socket's
    // ("connection refused", "database does not exist") rather than a pool time-out.
    match tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
        Ok(Err(e)) => return Err(DbError::Connect(e)),
        Err(_) => return Err(DbError::Connect(sqlx::Error::PoolTimedOut)),
    }
    // No ping before each acquire (sqlx's default): it costs a round trip on every request, and
    // an await point between taking a connection and using it, where a cancelled request drops
    // the connection (sqlx `Pool::acquire` docs). A connection that died while idle fails its
    // query with an I/O error instead, which `is_transient` answers as a retryable 503, and the
    // pool discards it.
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeout)
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// Closes `pool` at shutdown, waiting at most [`CLOSE_BUDGET`] for connections still in use
/// (a request cut off at the end of the grace period); those are dropped with the process.
pub async fn close(pool: &PgPool) {
    if tokio::time::timeout(CLOSE_BUDGET, pool.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still in use at shutdown; closing anyway");
    }
}

/// How long [`close`] waits.
pub const CLOSE_BUDGET: Duration = Duration::from_millis(500);

fn redact(message: &str, url: &str) -> String {
    message.replace(url, "<DATABASE_URL>")
}

/// The answer to a database error of a request: 503 when retrying may succeed, else 500. The
/// cause is logged here and never put in the body.
pub fn problem(e: &sqlx::Error) -> crate::error::Problem {
    tracing::error!(error = %e, "database error");
    if is_transient(e) {
        crate::error::Problem::unavailable()
    } else {
        crate::error::Problem::internal()
    }
}

/// Whether an error means the database is unreachable or overloaded (retrying may succeed).
pub fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")))
}

/// Whether an error is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Whether an error is a foreign-key violation (e.g. a token for an account that is gone).
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
}

/// The constraint a database error names, if any.
pub fn constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}
