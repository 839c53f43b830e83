//! The Cloud KMS provider against a stand-in that misbehaves: a server error, a body that is
//! not the documented JSON, an answer for another key, a stand-in that never answers. Each must
//! end as a `CryptoError::Provider` (retrying may succeed) within a bounded time, never as a
//! panic, a hang, or a wrapped key that was not what KMS documents.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::crypto::kms::CloudKms;
use common::crypto::{CryptoError, KeyProvider, Wrapped};

const KEY: &str = "projects/dta-wide-test/locations/europe-west3/keyRings/data/cryptoKeys/dek-wrap";

async fn stand_in(answer: fn() -> Response, delay: Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        answer()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn wrapped() -> Wrapped {
    Wrapped {
        kek_id: KEY.into(),
        kek_version: 1,
        bytes: vec![1, 2, 3, 4],
    }
}

/// Both calls against the stand-in; each must be a provider error within `bound`.
async fn both_calls_fail_as_provider_errors(endpoint: String, bound: Duration) -> Vec<String> {
    let kms = CloudKms::new(KEY, Some(endpoint)).unwrap();
    let mut messages = Vec::new();
    let started = Instant::now();
    let wrap = tokio::time::timeout(bound, kms.wrap(&[7u8; 32], b"aad"))
        .await
        .expect("encrypt must give up within the bound");
    match wrap {
        Err(CryptoError::Provider(m)) => messages.push(m),
        other => panic!("encrypt: expected a provider error, got {other:?}"),
    }
    let w = wrapped();
    let unwrap = tokio::time::timeout(bound, kms.unwrap(&w, b"aad"))
        .await
        .expect("decrypt must give up within the bound");
    match unwrap {
        Err(CryptoError::Provider(m)) => messages.push(m),
        other => panic!("decrypt: expected a provider error, got {other:?}"),
    }
    assert!(started.elapsed() < bound * 2);
    messages
}

#[tokio::test]
async fn a_server_error_is_a_provider_error_not_a_refused_decryption() {
    fn answer() -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": {"code": 500, "message": "internal", "status": "INTERNAL"}})),
        )
            .into_response()
    }
    let endpoint = stand_in(answer, Duration::ZERO).await;
    let messages = both_calls_fail_as_provider_errors(endpoint, Duration::from_secs(20)).await;
    assert!(
        messages.iter().all(|m| m.starts_with("cloud kms ")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_the_documented_json_is_a_provider_error() {
    fn answer() -> Response {
        (StatusCode::OK, "<html>proxy login</html>").into_response()
    }
    let endpoint = stand_in(answer, Duration::ZERO).await;
    both_calls_fail_as_provider_errors(endpoint, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn an_empty_json_answer_is_refused_by_the_checksums() {
    // `{}` parses as a response with every field at its default: no verified CRC32C, no
    // ciphertext, no plaintext checksum.
    fn answer() -> Response {
        (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
    }
    let endpoint = stand_in(answer, Duration::ZERO).await;
    let messages = both_calls_fail_as_provider_errors(endpoint, Duration::from_secs(20)).await;
    assert!(
        messages.iter().all(|m| m.contains("CRC32C")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_stand_in_that_never_answers_is_given_up_on() {
    fn answer() -> Response {
        StatusCode::OK.into_response()
    }
    // Far longer than any request to the service may take. The provider as configured in
    // production gives up after its call timeout.
    let endpoint = stand_in(answer, Duration::from_secs(600)).await;
    let bound = common::crypto::kms::CALL_TIMEOUT + Duration::from_secs(5);
    let messages = both_calls_fail_as_provider_errors(endpoint, bound).await;
    assert!(
        messages.iter().all(|m| m.contains("no answer within")),
        "{messages:?}"
    );
}

#[test]
fn a_kms_key_name_in_another_shape_is_refused_at_start() {
    for name in [
        "",
        "dek-wrap",
        "projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "projects/p/locations/europe-west3/keyRings/r/cryptoKeys/",
        "/projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k",
        "projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k/",
        "projects/p/regions/europe-west3/keyRings/r/cryptoKeys/k",
    ] {
        let err = CloudKms::new(name, None).err();
        assert!(
            matches!(&err, Some(CryptoError::Provider(m)) if m.contains("KMS_KEY_NAME")),
            "{name:?}: {err:?}"
        );
    }
}
