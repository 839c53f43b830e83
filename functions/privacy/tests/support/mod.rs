//! Builds the service's state against the real stores: the test's database, Redis under a
//! unique key prefix, the Firestore emulator and fake-gcs-server.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::cache::{Redis, RedisConfig};
use common::testkit;
use privacy::{AppState, app};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub const PROJECT: &str = "dta-wide-privacy-test";

pub fn redis() -> Redis {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    Redis::connect(&RedisConfig {
        redis_url: url.into(),
        redis_key_prefix: format!("t-{}", Uuid::new_v4().simple()),
        redis_timeout_ms: 2000,
    })
    .unwrap()
}

pub async fn bucket() -> common::storage::Storage {
    let host = std::env::var("STORAGE_EMULATOR_HOST").expect(
        "STORAGE_EMULATOR_HOST is not set: run scripts/emulators.sh start and eval \"$(scripts/emulators.sh env)\"",
    );
    let config = common::storage::StorageConfig {
        storage_emulator_host: Some(host),
    };
    let storage =
        common::storage::Storage::connect(&config, &format!("exports-{}", Uuid::new_v4().simple()))
            .await
            .unwrap();
    storage.ensure_bucket(PROJECT).await.unwrap();
    storage
}

pub async fn state(pool: PgPool) -> AppState {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run scripts/emulators.sh start"
    );
    let firestore = firestore::FirestoreDb::new(PROJECT).await.unwrap();
    AppState {
        pool: pool.clone(),
        keys: testkit::jwt_keys(),
        stores: privacy::erasure::Stores {
            pool: pool.clone(),
            redis: redis(),
            firestore,
            buckets: vec![bucket().await],
            keyring: testkit::keyring(&pool),
            archive: None,
        },
    }
}

pub async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    user: Uuid,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, testkit::bearer(&state.keys, user));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app(state.clone(), Duration::from_secs(30))
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    (status, testkit::json_body(res).await)
}
