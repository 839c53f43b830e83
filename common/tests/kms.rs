//! The Cloud KMS provider against a local HTTP stand-in of the two calls it uses,
//! `POST /v1/{name}:encrypt` and `POST /v1/{name}:decrypt`, answering as the REST reference
//! documents them (cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/encrypt
//! and …/decrypt): camelCase JSON, bytes as base64, int64 CRC32C values as decimal strings, a
//! failed decryption as 400 `INVALID_ARGUMENT`. The stand-in really encrypts (AES-256-GCM, one
//! key per version, the version inside the ciphertext as KMS does), so rotation is real.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::crypto::kms::CloudKms;
use common::crypto::{CryptoError, KeyConfig, KeyProvider, Keyring};
use serde_json::{Value, json};
use sqlx::PgPool;

const KEY: &str = "projects/dta-wide-test/locations/europe-west3/keyRings/data/cryptoKeys/dek-wrap";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Corrupt {
    None,
    /// A byte of the ciphertext flips on the way back; its CRC32C is the original's.
    EncryptResponse,
    /// A byte of the plaintext flips on the way back.
    DecryptResponse,
}

struct Fake {
    versions: BTreeMap<u32, LessSafeKey>,
    primary: u32,
    corrupt: Corrupt,
    /// Every request body, to check what the client sent.
    requests: Vec<Value>,
}

type Shared = Arc<Mutex<Fake>>;

fn new_key() -> LessSafeKey {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).unwrap())
}

fn invalid(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})),
    )
        .into_response()
}

fn bytes_field(body: &Value, field: &str) -> Vec<u8> {
    body[field]
        .as_str()
        .map(|s| B64.decode(s).expect("base64"))
        .unwrap_or_default()
}

/// A CRC32C field is an int64, which proto3 JSON writes as a string.
fn crc_field(body: &Value, field: &str) -> Option<u32> {
    match &body[field] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// Answers a request whose CRC32C field does not match its data as KMS does: refused.
fn check_crc(body: &Value, data: &[u8], field: &str) -> Result<bool, Response> {
    match crc_field(body, field) {
        Some(c) if c != crc32c::crc32c(data) => Err(invalid("checksum mismatch")),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

async fn handle(State(fake): State<Shared>, uri: Uri, Json(body): Json<Value>) -> Response {
    let path = uri.path().strip_prefix("/v1/").unwrap_or_default();
    let Some((name, method)) = path.rsplit_once(':') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if name != KEY {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})),
        )
            .into_response();
    }
    let mut fake = fake.lock().unwrap();
    fake.requests.push(body.clone());
    let aad = bytes_field(&body, "additionalAuthenticatedData");
    let aad_ok = match check_crc(&body, &aad, "additionalAuthenticatedDataCrc32c") {
        Ok(v) => v,
        Err(r) => return r,
    };
    match method {
        "encrypt" => {
            let plaintext = bytes_field(&body, "plaintext");
            let plain_ok = match check_crc(&body, &plaintext, "plaintextCrc32c") {
                Ok(v) => v,
                Err(r) => return r,
            };
            let version = fake.primary;
            let key = &fake.versions[&version];
            let mut nonce = [0u8; NONCE_LEN];
            aws_lc_rs::rand::fill(&mut nonce).unwrap();
            let mut sealed = plaintext.clone();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut sealed,
            )
            .unwrap();
            let mut ciphertext = version.to_be_bytes().to_vec();
            ciphertext.extend_from_slice(&nonce);
            ciphertext.extend_from_slice(&sealed);
            let crc = crc32c::crc32c(&ciphertext);
            if fake.corrupt == Corrupt::EncryptResponse {
                ciphertext[10] ^= 0x01;
            }
            Json(json!({
                "name": format!("{KEY}/cryptoKeyVersions/{version}"),
                "ciphertext": B64.encode(&ciphertext),
                "ciphertextCrc32c": crc.to_string(),
                "verifiedPlaintextCrc32c": plain_ok,
                "verifiedAdditionalAuthenticatedDataCrc32c": aad_ok,
                "protectionLevel": "HSM",
            }))
            .into_response()
        }
        "decrypt" => {
            let ciphertext = bytes_field(&body, "ciphertext");
            if let Err(r) = check_crc(&body, &ciphertext, "ciphertextCrc32c") {
                return r;
            }
            if ciphertext.len() < 4 + NONCE_LEN {
                return invalid("Decryption failed: the ciphertext is invalid.");
            }
            let version = u32::from_be_bytes(ciphertext[..4].try_into().unwrap());
            let Some(key) = fake.versions.get(&version) else {
                return invalid("Decryption failed: the ciphertext is invalid.");
            };
            let nonce = Nonce::try_assume_unique_for_key(&ciphertext[4..4 + NONCE_LEN]).unwrap();
            let mut buf = ciphertext[4 + NONCE_LEN..].to_vec();
            let Ok(plain) = key.open_in_place(nonce, Aad::from(&aad), &mut buf) else {
                return invalid("Decryption failed: the ciphertext is invalid.");
            };
            let mut plaintext = plain.to_vec();
            let crc = crc32c::crc32c(&plaintext);
            if fake.corrupt == Corrupt::DecryptResponse {
                plaintext[0] ^= 0x01;
            }
            Json(json!({
                "plaintext": B64.encode(&plaintext),
                "plaintextCrc32c": crc.to_string(),
                "usedPrimary": version == fake.primary,
                "protectionLevel": "HSM",
            }))
            .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn fake_kms() -> (Shared, String) {
    let fake = Arc::new(Mutex::new(Fake {
        versions: BTreeMap::from([(1, new_key())]),
        primary: 1,
        corrupt: Corrupt::None,
        requests: Vec::new(),
    }));
    let app = axum::Router::new()
        .fallback(axum::routing::post(handle))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}"))
}

fn rotate(fake: &Shared) -> u32 {
    let mut f = fake.lock().unwrap();
    let next = f.primary + 1;
    f.versions.insert(next, new_key());
    f.primary = next;
    next
}

#[tokio::test]
async fn a_data_key_round_trips_through_kms_with_its_version_and_checksums() {
    let (fake, endpoint) = fake_kms().await;
    let kms = CloudKms::new(KEY, Some(endpoint)).unwrap();
    let dek = [7u8; 32];
    let wrapped = kms.wrap(&dek, b"user+key").await.unwrap();
    assert_eq!(wrapped.kek_id, KEY);
    assert_eq!(wrapped.kek_version, 1);
    assert_eq!(kms.primary_version(), 1);
    assert_ne!(wrapped.bytes, dek.to_vec());
    assert_eq!(kms.unwrap(&wrapped, b"user+key").await.unwrap(), dek);

    // The client sent the CRC32C of every input (decimal strings, as proto3 JSON writes int64).
    let requests = fake.lock().unwrap().requests.clone();
    assert_eq!(
        crc_field(&requests[0], "plaintextCrc32c"),
        Some(crc32c::crc32c(&dek))
    );
    assert_eq!(
        crc_field(&requests[0], "additionalAuthenticatedDataCrc32c"),
        Some(crc32c::crc32c(b"user+key"))
    );
    assert_eq!(
        crc_field(&requests[1], "ciphertextCrc32c"),
        Some(crc32c::crc32c(&wrapped.bytes))
    );
}

#[tokio::test]
async fn another_aad_an_altered_wrap_or_another_key_do_not_unwrap() {
    let (_fake, endpoint) = fake_kms().await;
    let kms = CloudKms::new(KEY, Some(endpoint)).unwrap();
    let wrapped = kms.wrap(&[1u8; 32], b"user-a").await.unwrap();
    assert!(matches!(
        kms.unwrap(&wrapped, b"user-b").await,
        Err(CryptoError::Invalid)
    ));
    let mut altered = wrapped.clone();
    let last = altered.bytes.len() - 1;
    altered.bytes[last] ^= 1;
    assert!(matches!(
        kms.unwrap(&altered, b"user-a").await,
        Err(CryptoError::Invalid)
    ));
    let mut foreign = wrapped.clone();
    foreign.kek_id = "local:/keys".into();
    assert!(matches!(
        kms.unwrap(&foreign, b"user-a").await,
        Err(CryptoError::UnknownKek(_, 1))
    ));
}

#[tokio::test]
async fn a_response_that_fails_its_crc32c_is_refused() {
    let (fake, endpoint) = fake_kms().await;
    let kms = CloudKms::new(KEY, Some(endpoint)).unwrap();
    let good = kms.wrap(&[3u8; 32], b"aad").await.unwrap();

    fake.lock().unwrap().corrupt = Corrupt::EncryptResponse;
    let err = kms.wrap(&[3u8; 32], b"aad").await.unwrap_err();
    assert!(
        matches!(&err, CryptoError::Provider(m) if m.contains("CRC32C")),
        "{err}"
    );

    fake.lock().unwrap().corrupt = Corrupt::DecryptResponse;
    let err = kms.unwrap(&good, b"aad").await.unwrap_err();
    assert!(
        matches!(&err, CryptoError::Provider(m) if m.contains("CRC32C")),
        "{err}"
    );

    fake.lock().unwrap().corrupt = Corrupt::None;
    assert_eq!(kms.unwrap(&good, b"aad").await.unwrap(), [3u8; 32]);
}

#[tokio::test]
async fn the_configuration_selects_kms_and_refuses_two_providers() {
    let (_fake, endpoint) = fake_kms().await;
    let config = KeyConfig {
        data_key_file: None,
        kms_key_name: Some(KEY.into()),
        kms_endpoint: Some(endpoint),
    };
    let provider = config.provider().unwrap();
    let wrapped = provider.wrap(&[5u8; 32], b"aad").await.unwrap();
    assert_eq!(wrapped.kek_id, KEY);

    let both = KeyConfig {
        data_key_file: Some("keys".into()),
        ..config.clone()
    };
    assert!(both.provider().is_err());
    let bad_name = KeyConfig {
        kms_key_name: Some("projects/p/keyRings/r".into()),
        ..config
    };
    assert!(bad_name.provider().is_err());
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn rotation_keeps_old_wraps_readable_and_rewrap_moves_them(pool: PgPool) {
    let (fake, endpoint) = fake_kms().await;
    let kms: Arc<dyn KeyProvider> = Arc::new(CloudKms::new(KEY, Some(endpoint)).unwrap());
    let keyring = Keyring::new(pool.clone(), kms.clone());
    let old_user = common::testkit::user(&pool).await;
    let key = keyring.data_key(old_user).await.unwrap();
    let ct = key
        .encrypt_str("diary_entries.comment:1", "vor der Rotation")
        .unwrap();
    let version = |user| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT kek_version FROM user_keys WHERE user_id = $1")
                .bind(user)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(version(old_user).await, 1);

    // KMS rotates: version 2 becomes primary. The old wrap still unwraps (KMS reads the
    // version from the ciphertext); new data keys are wrapped by version 2.
    assert_eq!(rotate(&fake), 2);
    assert_eq!(
        keyring
            .decrypt_str(old_user, "diary_entries.comment:1", &ct)
            .await
            .unwrap(),
        "vor der Rotation"
    );
    let new_user = common::testkit::user(&pool).await;
    keyring.data_key(new_user).await.unwrap();
    assert_eq!(version(new_user).await, 2);

    // rewrap_all learns the primary version from KMS and moves only the old wrap.
    assert_eq!(keyring.rewrap_all().await.unwrap(), 1);
    assert_eq!(version(old_user).await, 2);
    assert_eq!(kms.primary_version(), 2);
    assert_eq!(keyring.rewrap_all().await.unwrap(), 0);

    // With version 1 gone, the moved key still opens the old ciphertext.
    fake.lock().unwrap().versions.remove(&1);
    assert_eq!(
        keyring
            .decrypt_str(old_user, "diary_entries.comment:1", &ct)
            .await
            .unwrap(),
        "vor der Rotation"
    );
}
