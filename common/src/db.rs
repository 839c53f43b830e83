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

/// A pool of PostgreSQL connections for the hot write path: a connection whose exchange
/// completed goes back to the pool with no I/O.
///
/// sqlx's own pool (0.8.6, and 0.9) sends a round trip (`Sync`, answered by `ReadyForQuery`)
/// on every connection it takes back, and keeps the connection out of the pool until the
/// answer comes (`PoolConnection::return_to_pool`). On a single-statement request that is a
/// second round trip per request, and the ping has no time-out: a connection black-holed by
/// the network holds its pool slot for good (sqlx issue #4349). The ping is there for a
/// connection left mid-exchange by a cancelled query. A [`Lease`] knows when that is the case:
/// only a lease dropped before [`Lease::settle`] (the request was cancelled at an `.await`),
/// or settled inside a transaction, is pinged before it is reused; one settled with an I/O,
/// TLS or protocol error is closed.
///
/// The pool's connections carry a server-side `statement_timeout` (a startup parameter, no
/// round trip), and the ping of a cancelled lease waits that long plus [`RECOVER_MARGIN`]: the
/// slot is freed only once the server has ended the statement, or the connection gave no
/// answer at all (black-holed). Freeing it sooner would let a stalled database (a lock, an
/// overload) collect a new backend per slot on every round of cancelled requests, up to the
/// server's `max_connections`.
///
/// The pool is deadpool's managed pool; connections open lazily, are replaced after
/// [`MAX_LIFETIME`] or [`MAX_IDLE`] (sqlx's defaults), and waiting for one is bounded by the
/// acquire time-out.
#[derive(Clone)]
pub struct StatementPool {
    inner: deadpool::managed::Pool<Connector>,
    /// How long a cancelled lease's ping may take.
    recover: Duration,
}

/// How long past the statement timeout a connection left mid-exchange may take to answer its
/// ping before it is closed instead of reused.
pub const RECOVER_MARGIN: Duration = Duration::from_secs(1);

/// A connection is replaced when it is older than this (sqlx's `max_lifetime` default), so
/// server-side memory and a changed DNS answer (a failover) are picked up.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A connection idle for longer than this is replaced rather than reused (sqlx's
/// `idle_timeout` default): a NAT or proxy may have dropped it silently.
pub const MAX_IDLE: Duration = Duration::from_secs(10 * 60);

struct Connector {
    options: PgConnectOptions,
    timeout: Duration,
}

impl deadpool::managed::Manager for Connector {
    type Type = sqlx::PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<sqlx::PgConnection, sqlx::Error> {
        use sqlx::Connection as _;
        tokio::time::timeout(
            self.timeout,
            sqlx::PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn recycle(
        &self,
        _conn: &mut sqlx::PgConnection,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<sqlx::Error> {
        // No I/O: a connection is in the pool only after a clean exchange (see `Lease`).
        if metrics.age() > MAX_LIFETIME || metrics.last_used() > MAX_IDLE {
            return Err(deadpool::managed::RecycleError::message(
                "past its lifetime",
            ));
        }
        Ok(())
    }
}

impl StatementPool {
    /// A pool of at most `max_connections`, none opened yet. `timeout` bounds both the wait
    /// for a free connection and the opening of a new one.
    /// `statement_timeout` is set on every connection (PostgreSQL ends a statement running
    /// longer, with SQLSTATE 57014, answered 503).
    pub fn new(
        options: PgConnectOptions,
        max_connections: u32,
        timeout: Duration,
        statement_timeout: Duration,
    ) -> Self {
        let options = options.options([(
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis().max(1)),
        )]);
        let inner = deadpool::managed::Pool::builder(Connector { options, timeout })
            .max_size(usize::try_from(max_connections.max(1)).unwrap_or(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .build()
            // Only a time-out without a runtime fails the build, and the runtime is set.
            .unwrap_or_else(|e| unreachable!("deadpool build: {e}"));
        Self {
            inner,
            recover: statement_timeout + RECOVER_MARGIN,
        }
    }

    /// A pool beside `pool`: the same server, options, size and time-out. (`pool` keeps the
    /// rest of a function's queries; this one takes its hot path.)
    pub fn beside(pool: &PgPool, statement_timeout: Duration) -> Self {
        let options = pool.options();
        Self::new(
            (*pool.connect_options()).clone(),
            options.get_max_connections(),
            options.get_acquire_timeout(),
            statement_timeout,
        )
    }

    /// A connection for one exchange; a full pool waits up to the time-out
    /// (`PoolTimedOut`, answered 503 by [`problem`]).
    pub async fn lease(&self) -> Result<Lease, sqlx::Error> {
        use deadpool::managed::PoolError;
        match self.inner.get().await {
            Ok(object) => Ok(Lease {
                object: Some(object),
                recover: self.recover,
            }),
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
            Err(e) => Err(sqlx::Error::Configuration(e.to_string().into())),
        }
    }

    /// Connections open now (in use or idle).
    pub fn size(&self) -> usize {
        self.inner.status().size
    }

    /// Connections open and waiting in the pool.
    pub fn idle(&self) -> usize {
        self.inner.status().available
    }

    /// Closes the pool at shutdown: idle connections are closed politely (within
    /// [`CLOSE_BUDGET`]), connections still leased are dropped when their lease ends.
    pub async fn close(&self) {
        use sqlx::Connection as _;
        let idle = self.inner.retain(|_, _| false).removed;
        self.inner.close();
        let closing = async {
            for conn in idle {
                let _ = conn.close().await;
            }
        };
        if tokio::time::timeout(CLOSE_BUDGET, closing).await.is_err() {
            tracing::warn!("database connections did not close in time; dropping them");
        }
    }
}

/// One connection taken from a [`StatementPool`]. Hand it back with [`Lease::settle`] and the
/// result of what ran on it.
pub struct Lease {
    object: Option<deadpool::managed::Object<Connector>>,
    recover: Duration,
}

impl Lease {
    /// The connection, to run queries on (`query.fetch_one(lease.conn())`).
    pub fn conn(&mut self) -> &mut sqlx::PgConnection {
        self.object
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }

    /// Ends the lease after `result`. The connection goes back to the pool at once when the
    /// exchange completed (a value, or an error the server answered with) outside a
    /// transaction; it is closed after an I/O, TLS or protocol error or when the server is
    /// going away; otherwise it is pinged first, as when the lease is dropped unsettled.
    pub fn settle<T>(mut self, result: &Result<T, sqlx::Error>) {
        use sqlx::Connection as _;
        let conn = self.conn();
        // `should_flush`: a dropped transaction's ROLLBACK still waiting to be sent.
        let idle = !conn.is_in_transaction() && !conn.should_flush();
        match result {
            // The server is going away (`57P01` after `pg_terminate_backend`, say).
            Err(sqlx::Error::Database(db)) if server_gone(db.code().as_deref()) => self.discard(),
            // Back to the pool (the object's own drop).
            Ok(_) | Err(sqlx::Error::Database(_) | sqlx::Error::RowNotFound) if idle => {
                drop(self.object.take());
            }
            // Pinged first, by `Drop`.
            Ok(_) | Err(sqlx::Error::Database(_) | sqlx::Error::RowNotFound) => {}
            Err(_) => self.discard(),
        }
    }

    /// Closes the connection: it leaves the pool and its socket is dropped.
    fn discard(&mut self) {
        if let Some(object) = self.object.take() {
            drop(deadpool::managed::Object::take(object));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Cancelled mid-exchange (or settled inside a transaction): the answer may still be
        // on its way. Ping in the background, as sqlx's pool would, but only until the
        // statement timeout has surely ended the statement; a connection that does not answer
        // by then, or is still in a transaction, is closed (the server sees the socket close
        // and rolls back whatever was open).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.discard();
            return;
        };
        let Some(mut object) = self.object.take() else {
            return;
        };
        let budget = self.recover;
        runtime.spawn(async move {
            use sqlx::Connection as _;
            let answered = matches!(
                tokio::time::timeout(budget, object.ping()).await,
                Ok(Ok(()))
            );
            if !answered || object.is_in_transaction() {
                drop(deadpool::managed::Object::take(object));
            }
        });
    }
}

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

/// Whether a server error's SQLSTATE says the session is over (class 08, connection
/// exception; 57P, operator intervention: terminated, shutting down, cannot connect now).
fn server_gone(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
}

/// Whether an error means the database is unreachable or overloaded (retrying may succeed):
/// also a statement ended by its `statement_timeout` (57014).
pub fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    ) || matches!(e, sqlx::Error::Database(db) if server_gone(db.code().as_deref()) || db.code().is_some_and(|c| c.starts_with("53") || c == "57014"))
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
