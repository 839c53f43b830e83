//! The real binary on a real socket: start, score one submission, drain on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_binary_scores_a_submission_and_exits_zero_on_sigterm(pool: PgPool) {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let url = match admin_url().rsplit_once('/') {
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
    let session = common::cache::Sessions::new(
        redis,
        common::cache::SessionConfig {
            session_idle_timeout_secs: 60,
            session_absolute_timeout_secs: 120,
        },
    )
    .create(user)
    .await
    .unwrap();
    let bearer = format!(
        "Bearer {}",
        keys.sign(user, Duration::from_secs(600), Some(session.id.clone()))
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_questionnaire-scoring"))
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
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the service answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // REFERENCE §1.6 G7: 10, moderate, refer.
    let body = serde_json::json!({ "questionnaire": "gad-7", "answers": {
        "gad7-1": 2, "gad7-2": 2, "gad7-3": 2, "gad7-4": 2, "gad7-5": 2, "gad7-6": 0, "gad7-7": 0 } });
    let res = client
        .post(format!("{base}/v1/questionnaire-responses"))
        .header("authorization", &bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let score: serde_json::Value = res.json().await.unwrap();
    assert_eq!(score["score"]["score"]["band"]["code"], "gad7-moderate");

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
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
