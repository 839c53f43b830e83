//! The real binary on a real socket: start, score one submission, drain on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The running binary, its base URL and a bearer token of a user with a live session.
struct Service {
    child: std::process::Child,
    base: String,
    bearer: String,
}

async fn start(pool: &PgPool, env: &[(&str, String)]) -> Service {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let url = match admin_url().rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db}"),
        None => unreachable!(),
    };
    let user = common::testkit::user(pool).await;
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
    let mut command = Command::new(env!("CARGO_BIN_EXE_questionnaire-scoring"));
    command
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("DATABASE_URL", &url)
        .env("JWT_SECRET", "test-only-key-0123456789abcdef0123456789")
        .env("JWT_KEY_ID", "test-1")
        .env("REDIS_URL", &redis_url)
        .env("REDIS_KEY_PREFIX", &redis_prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
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
    Service {
        child,
        base,
        bearer,
    }
}

/// Sends SIGTERM; the exit status and how long the process took to exit.
async fn terminate(child: &mut std::process::Child) -> (Option<i32>, Duration) {
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let stopping = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), stopping.elapsed());
        }
        assert!(stopping.elapsed() < Duration::from_secs(12), "exits at all");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outbox as (event type, publish attempts), oldest first.
async fn outbox(pool: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT payload->>'type', attempts FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// REFERENCE §1.6 G7: 10, moderate, refer.
fn gad7_moderate() -> serde_json::Value {
    serde_json::json!({ "questionnaire": "gad-7", "answers": {
        "gad7-1": 2, "gad7-2": 2, "gad7-3": 2, "gad7-4": 2, "gad7-5": 2, "gad7-6": 0, "gad7-7": 0 } })
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_binary_scores_a_submission_and_exits_zero_on_sigterm(pool: PgPool) {
    let Service {
        mut child,
        base,
        bearer,
    } = start(&pool, &[]).await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/v1/questionnaire-responses"))
        .header("authorization", &bearer)
        .json(&gad7_moderate())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let score: serde_json::Value = res.json().await.unwrap();
    assert_eq!(score["score"]["score"]["band"]["code"], "gad7-moderate");

    let (code, took) = terminate(&mut child).await;
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(10),
        "exits within 10 s: {took:?}"
    );
}

/// Pub/Sub that accepts connections and never answers (a network black hole) must not hold
/// the process past Cloud Run's 10 s from SIGTERM to SIGKILL: the last outbox drain is cut
/// off, and the event it could not send stays in the outbox, unlocked and untouched.
#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_silent_pubsub_does_not_hold_the_shutdown_and_loses_no_event(pool: PgPool) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let Service {
        mut child,
        base,
        bearer,
    } = start(
        &pool,
        &[
            (
                "PUBSUB_EMULATOR_HOST",
                silent.local_addr().unwrap().to_string(),
            ),
            // No drain before the stop: the event waits in the outbox for the last one.
            ("OUTBOX_INTERVAL_MS", "3600000".into()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/v1/questionnaire-responses"))
        .header("authorization", &bearer)
        .json(&gad7_moderate())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let queued = outbox(&pool).await;
    assert!(!queued.is_empty(), "the submission queued its events");

    // The idle keep-alive connection of `client` stays open across the stop.
    let (code, took) = terminate(&mut child).await;
    assert_eq!(code, Some(0));
    // The grace period has nothing to wait for; the cut-off last drain (1 s) and the pool
    // close (at most 0.5 s) are the rest.
    assert!(
        took < Duration::from_secs(4),
        "exits well inside 10 s: {took:?}"
    );
    let after = outbox(&pool).await;
    assert_eq!(
        after, queued,
        "every event is still there, none marked as tried"
    );
    drop(silent);
}
