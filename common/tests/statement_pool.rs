//! `common::db::StatementPool` against a real PostgreSQL (one fresh database per test): a
//! connection goes back without a round trip, and one left mid-exchange is never reused with
//! a stale answer, an open transaction or a dead socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::db::{RECOVER_MARGIN, StatementPool};
use sqlx::{Connection as _, PgPool};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The statement timeout of the pools here (the services use their request timeout).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);

/// A pool of `size` beside the test's database.
fn pool_of(pool: &PgPool, size: u32) -> StatementPool {
    StatementPool::new(
        (*pool.connect_options()).clone(),
        size,
        Duration::from_secs(5),
        STATEMENT_TIMEOUT,
    )
}

async fn backend_pid(pool: &StatementPool) -> i32 {
    let mut lease = pool.lease().await.expect("lease");
    let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
        .fetch_one(lease.conn())
        .await;
    lease.settle(&pid);
    pid.expect("pid")
}

#[sqlx::test(migrations = false)]
async fn a_settled_connection_is_back_at_once_and_reused(pool: PgPool) {
    let writes = pool_of(&pool, 2);
    let mut lease = writes.lease().await.unwrap();
    let first: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(lease.conn())
        .await
        .unwrap();
    assert_eq!(writes.idle(), 0);
    lease.settle(&Ok::<_, sqlx::Error>(()));
    // Back without an await in between: no ping on the way into the pool.
    assert_eq!(writes.idle(), 1);
    assert_eq!(backend_pid(&writes).await, first);
    assert_eq!(writes.size(), 1);
}

#[sqlx::test(migrations = false)]
async fn a_cancelled_query_leaves_no_answer_for_the_next(pool: PgPool) {
    let writes = pool_of(&pool, 1);
    let mut lease = writes.lease().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(lease.conn())
        .await
        .unwrap();
    // The request is cancelled while the server is still working on the statement.
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_sleep(0.3)").fetch_one(lease.conn()),
    )
    .await;
    assert!(cut.is_err(), "the statement should still be running");
    drop(lease);

    let mut lease = writes.lease().await.unwrap();
    let (answer, again): (i32, i32) = sqlx::query_as("SELECT 2, pg_backend_pid()")
        .fetch_one(lease.conn())
        .await
        .unwrap();
    assert_eq!(answer, 2, "the next user reads its own answer");
    assert_eq!(again, pid, "the connection was recovered, not reopened");
}

#[sqlx::test(migrations = false)]
async fn a_transaction_dropped_midway_rolls_back_and_releases_its_lock(pool: PgPool) {
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)")
        .execute(&pool)
        .await
        .unwrap();
    let writes = pool_of(&pool, 1);
    let mut lease = writes.lease().await.unwrap();
    let mut tx = lease.conn().begin().await.unwrap();
    sqlx::query("UPDATE t SET v = 1 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    // An early return (`?`) between the statements: neither committed nor settled.
    drop(tx);
    drop(lease);

    // Another connection takes the row lock at once, and the update never happened.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '2s'")
        .execute(&mut *other)
        .await
        .unwrap();
    let v: i32 = sqlx::query_scalar("UPDATE t SET v = v + 10 WHERE id = 1 RETURNING v")
        .fetch_one(&mut *other)
        .await
        .expect("the row lock was released");
    assert_eq!(v, 10);
    // And the pooled connection is out of any transaction for its next user.
    let pid = backend_pid(&writes).await;
    let state: String = sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert_eq!(state, "idle");
}

#[sqlx::test(migrations = false)]
async fn a_connection_the_server_closed_is_replaced(pool: PgPool) {
    let writes = pool_of(&pool, 1);
    let pid = backend_pid(&writes).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(killed);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The request that finds the dead connection fails as retryable (503), and it is closed.
    let mut lease = writes.lease().await.unwrap();
    let lost = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(lease.conn())
        .await;
    let e = lost.as_ref().expect_err("the connection was terminated");
    assert!(common::db::is_transient(e), "{e:?}");
    lease.settle(&lost);
    assert_eq!(writes.size(), 0);
    // The next one gets a new connection.
    assert_ne!(backend_pid(&writes).await, pid);
}

/// A TCP relay to PostgreSQL that can stop forwarding on the connections it holds (a network
/// that black-holes them: no reset, no answer), while new connections pass.
struct Relay {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// Connections with an index below this are silent.
    silenced: Arc<AtomicUsize>,
    /// Set at the end of a test: every relayed socket closes (so the server's backends end
    /// and the test database can be dropped).
    closed: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let silenced = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (a, s, c) = (accepted.clone(), silenced.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let index = a.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect((target.0.as_str(), target.1))
                    .await
                    .unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, index, s.clone(), c.clone()));
                tokio::spawn(pump(sr, cw, index, s.clone(), c.clone()));
            }
        });
        Self {
            port,
            accepted,
            silenced,
            closed,
        }
    }

    /// Every connection opened so far goes silent.
    fn black_hole_existing(&self) {
        self.silenced
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    index: usize,
    silenced: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if index < silenced.load(Ordering::SeqCst) {
            // Hold both sockets open and forward nothing, until the relay goes.
            while !closed.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[sqlx::test(migrations = false)]
async fn a_black_holed_connection_frees_its_slot_within_the_budget(pool: PgPool) {
    let direct = (*pool.connect_options()).clone();
    let relay = Relay::start((direct.get_host().to_owned(), direct.get_port())).await;
    let writes = StatementPool::new(
        direct.port(relay.port),
        1,
        Duration::from_secs(5),
        STATEMENT_TIMEOUT,
    );
    let pid = backend_pid(&writes).await;

    relay.black_hole_existing();
    let mut lease = writes.lease().await.unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(lease.conn()),
    )
    .await;
    assert!(cut.is_err(), "a black-holed connection gives no answer");
    drop(lease);

    // The only slot comes back once the recovery ping runs out of time, with a new connection
    // (sqlx's pool pings without a time-out and would hold the slot for good).
    let t0 = Instant::now();
    let again = backend_pid(&writes).await;
    let waited = t0.elapsed();
    assert_ne!(again, pid);
    assert!(
        waited < STATEMENT_TIMEOUT + RECOVER_MARGIN + Duration::from_secs(1),
        "waited {waited:?}"
    );
    assert_eq!(writes.size(), 1);
    drop(writes);
    drop(relay);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[sqlx::test(migrations = false)]
async fn a_stalled_database_gets_no_more_connections_than_the_pool_size(pool: PgPool) {
    sqlx::raw_sql("CREATE TABLE t (v int)")
        .execute(&pool)
        .await
        .unwrap();
    let options = (*pool.connect_options())
        .clone()
        .application_name("writes-storm");
    let writes = StatementPool::new(options, 2, Duration::from_secs(10), STATEMENT_TIMEOUT);
    // A lock longer than the statement timeout (a migration, say) stalls every insert.
    let locker = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("SELECT pg_sleep(3)")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Clients give up after 100 ms, again and again, for longer than the lock.
    let mut most = 0i64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(3500) {
        for _ in 0..2 {
            let writes = writes.clone();
            tokio::spawn(async move {
                let Ok(mut lease) = writes.lease().await else {
                    return;
                };
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    sqlx::query("INSERT INTO t VALUES (1)").execute(lease.conn()),
                )
                .await;
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'writes-storm'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        most = most.max(open);
    }
    locker.await.unwrap();
    assert!(most <= 2, "{most} server connections for a pool of 2");
    // And the pool serves again once the lock is gone.
    let mut lease = writes.lease().await.unwrap();
    let done = sqlx::query("INSERT INTO t VALUES (2)")
        .execute(lease.conn())
        .await;
    lease.settle(&done);
    done.unwrap();
}
