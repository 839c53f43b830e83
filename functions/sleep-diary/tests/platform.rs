//! The real binary: start, connect pre-flight and graceful shutdown.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::config::DbConfig;
use sqlx::PgPool;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_config(url: &str) -> DbConfig {
    DbConfig {
        database_url: url.to_owned().into(),
        db_max_connections: 2,
        db_connect_timeout_secs: 2,
    }
}

#[tokio::test]
async fn a_wrong_database_url_fails_fast_with_the_real_cause() {
    let started = Instant::now();
    let err = common::db::connect(&db_config("postgres://postgres@127.0.0.1:1/none"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let msg = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    let err = common::db::connect(&db_config(
        "postgres://postgres@127.0.0.1:5432/no_such_database_here",
    ))
    .await
    .unwrap_err();
    assert!(format!("{:?}", err).contains("does not exist"), "{err:?}");
    let err = common::db::connect(&db_config("mysql://x"))
        .await
        .unwrap_err();
    assert!(
        !err.to_string().contains("mysql://x"),
        "the URL is not repeated: {err}"
    );
}

#[tokio::test]
async fn a_cloud_sql_style_unix_socket_url_connects() {
    // Cloud Run mounts Cloud SQL as /cloudsql/PROJECT:REGION:INSTANCE/.s.PGSQL.5432; locally the
    // server's own socket directory plays that part.
    let dir = ["/var/run/postgresql", "/run/postgresql", "/tmp"]
        .into_iter()
        .find(|d| std::path::Path::new(&format!("{d}/.s.PGSQL.5432")).exists())
        .expect("a local PostgreSQL socket");
    let pool = common::db::connect(&db_config(&format!(
        "postgres:///postgres?host={dir}&user=postgres"
    )))
    .await
    .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    // The hot path's pool reaches the server the same way.
    let writes = common::db::StatementPool::beside(&pool, std::time::Duration::from_secs(30));
    let mut lease = writes.lease().await.unwrap();
    let over_socket = sqlx::query_scalar::<_, bool>("SELECT inet_client_addr() IS NULL")
        .fetch_one(lease.conn())
        .await;
    lease.settle(&over_socket);
    assert!(over_socket.unwrap(), "connected over the unix socket");
    writes.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn sigterm_lets_the_slow_request_finish_and_exits_zero(pool: PgPool) {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let base = admin_url();
    let url = match base.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db}"),
        None => unreachable!(),
    };
    let user = common::testkit::user(&pool).await;
    let keys = common::testkit::jwt_keys();
    // The service checks the token's session in Redis (the guard): start one, as auth would.
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let redis = common::cache::Redis::connect(&common::cache::RedisConfig {
        redis_url: redis_url.clone().into(),
        redis_key_prefix: redis_prefix.clone(),
        redis_timeout_ms: 500,
    })
    .unwrap();
    let session_config = common::cache::SessionConfig {
        session_idle_timeout_secs: 60,
        session_absolute_timeout_secs: 120,
    };
    let session = common::cache::Sessions::new(redis, session_config)
        .create(user)
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key_file = std::env::temp_dir().join(format!("data-key-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &key_file,
        common::crypto::LocalKeyFile::generate_line(1).unwrap(),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sleep-diary"))
        .env("DATA_KEY_FILE", &key_file)
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("DATABASE_URL", &url)
        .env("JWT_SECRET", "test-only-key-0123456789abcdef0123456789")
        .env("JWT_KEY_ID", "test-1")
        .env("REDIS_URL", &redis_url)
        .env("REDIS_KEY_PREFIX", &redis_prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut first_answer = None;
    while started.elapsed() < Duration::from_secs(10) {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            first_answer = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(first_answer.is_some(), "the service answered");

    // Make the next write slow: hold a lock on the table it inserts into.
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE diary_entries IN EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let body = serde_json::json!({
        "id": uuid::Uuid::new_v4(), "zone": "Europe/Berlin",
        "into_bed": "2025-02-03T22:45", "lights_out": "2025-02-03T23:00", "sol_min": 30,
        "awakenings": 2, "waso_min": 40, "final_awakening": "2025-02-04T06:00", "out_of_bed": "2025-02-04T06:30"
    });
    let request = tokio::spawn({
        let client = client.clone();
        let token = format!(
            "Bearer {}",
            keys.sign(user, Duration::from_secs(600), Some(session.id.clone()))
        );
        let url = format!("{base}/v1/sleep-logs");
        async move {
            client
                .post(url)
                .header("authorization", token)
                .json(&body)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the old request drains.
    assert!(
        client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_err()
    );
    locker.commit().await.unwrap();
    let res = request
        .await
        .unwrap()
        .expect("the in-flight request completed");
    assert_eq!(res.status(), 201);
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "exits within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}
