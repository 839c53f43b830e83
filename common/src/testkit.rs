//! Test helpers shared by the functions' tests (feature `testkit`, dev-only).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::auth::JwtKeys;

/// Issuer and audience the test keys use.
pub const ISSUER: &str = "dta-wide-auth";
/// Audience of the test keys.
pub const AUDIENCE: &str = "dta-wide-api";

/// A key ring for tests (not used anywhere else).
pub fn jwt_keys() -> Arc<JwtKeys> {
    let keys = vec![(
        "test-1".to_owned(),
        b"test-only-key-0123456789abcdef0123456789".to_vec(),
    )];
    Arc::new(JwtKeys::new(&keys, ISSUER, AUDIENCE, Duration::from_secs(30)).expect("test keys"))
}

/// `Authorization` header value for a user.
pub fn bearer(keys: &JwtKeys, user: Uuid) -> String {
    format!("Bearer {}", keys.sign(user, Duration::from_secs(600), None))
}

/// Inserts a user row so foreign keys hold, with the consent to the intended use (DiGAV §4(2)
/// Nr. 1) that every health-data write needs; returns its id.
pub async fn user(pool: &sqlx::PgPool) -> Uuid {
    let id = user_without_consent(pool).await;
    crate::consent::grant_current(pool, id, crate::consent::Purpose::IntendedUse)
        .await
        .expect("grant test consent");
    id
}

/// Inserts a user row without any consent; returns its id.
pub async fn user_without_consent(pool: &sqlx::PgPool) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email_lookup, password_hash) VALUES ($1, $2, 'x')")
        .bind(id)
        .bind(email_lookup().of(&email(id)))
        .execute(pool)
        .await
        .expect("insert test user");
    id
}

/// The address a [`user`] fixture stands for (its row holds only the blind index of it, no
/// `email_ct`).
pub fn email(user: Uuid) -> String {
    format!("{user}@example.test")
}

/// Stores the fixture's address as the auth function does: encrypted under the user's data
/// key from `keyring` (AAD `users.email:<id>`); returns the ciphertext.
pub async fn store_email(
    pool: &sqlx::PgPool,
    keyring: &crate::crypto::Keyring,
    user: Uuid,
) -> Vec<u8> {
    let key = keyring.data_key(user).await.expect("data key");
    let ct = key
        .encrypt_str(
            &crate::crypto::field_context("users", "email", user),
            &email(user),
        )
        .expect("encrypt the address");
    sqlx::query("UPDATE users SET email_ct = $2 WHERE id = $1")
        .bind(user)
        .bind(&ct)
        .execute(pool)
        .await
        .expect("store the address");
    ct
}

/// The e-mail blind-index secret of tests (not used anywhere else).
pub const EMAIL_LOOKUP_KEY: &str = "test-only-email-lookup-key-0123456789abcdef";

/// The e-mail blind index keyed by [`EMAIL_LOOKUP_KEY`].
pub fn email_lookup() -> crate::crypto::EmailLookup {
    crate::crypto::EmailLookup::new(EMAIL_LOOKUP_KEY.as_bytes()).expect("test lookup key")
}

/// Reads a response body as JSON.
pub async fn json_body(res: axum::response::Response) -> serde_json::Value {
    use http_body_util::BodyExt;
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

/// A keyring on a fresh in-memory wrapping key (tests only).
pub fn keyring(pool: &sqlx::PgPool) -> crate::crypto::Keyring {
    let line = crate::crypto::LocalKeyFile::generate_line(1).expect("random key");
    let provider = crate::crypto::LocalKeyFile::parse("test", &line).expect("test key file");
    crate::crypto::Keyring::new(pool.clone(), Arc::new(provider))
}
