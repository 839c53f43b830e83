//! The e-mail address, stored encrypted under the user's data key (`users.email_ct`), in the
//! export and under erasure (crypto-shredding), against the real stores.

mod support;

use axum::http::StatusCode;
use common::crypto::{CryptoError, field_context};
use common::testkit;
use sqlx::PgPool;

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_export_decrypts_the_address_into_the_patient_telecom(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let ct = testkit::store_email(&pool, &s.stores.keyring, user).await;
    let address = testkit::email(user);
    assert!(
        !ct.windows(address.len()).any(|w| w == address.as_bytes()),
        "no plaintext in email_ct"
    );
    let (status, bundle) = support::call(&s, "GET", "/v1/me/export", user, None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let patient = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")
        .expect("Patient");
    assert_eq!(patient["telecom"][0]["system"], "email");
    assert_eq!(patient["telecom"][0]["value"], address.as_str());
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn after_erasure_the_stored_address_no_longer_decrypts_and_its_login_limit_is_gone(
    pool: PgPool,
) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let ct = testkit::store_email(&pool, &s.stores.keyring, user).await;
    let context = field_context("users", "email", user);
    assert_eq!(
        s.stores
            .keyring
            .decrypt_str(user, &context, &ct)
            .await
            .unwrap(),
        testkit::email(user)
    );
    // The per-account login limit, keyed by the blind index the row stores.
    let lookup: String = sqlx::query_scalar("SELECT email_lookup FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(lookup, testkit::email_lookup().of(&testkit::email(user)));
    let redis = &s.stores.redis;
    let limit_key = redis.key(&["rl", "login", "acct", &lookup]);
    let _: () = redis::cmd("SET")
        .arg(&limit_key)
        .arg(1)
        .arg("EX")
        .arg(600)
        .query_async(&mut redis.conn())
        .await
        .unwrap();

    let done = privacy::erasure::erase(&s.stores, user).await.unwrap();
    assert!(done.done(), "{done:?}");

    let exists: bool = redis::cmd("EXISTS")
        .arg(&limit_key)
        .query_async(&mut redis.conn())
        .await
        .unwrap();
    assert!(
        !exists,
        "the login limit keyed by the blind index is erased"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // A copy of the ciphertext (a backup, say) is unreadable: the data key is destroyed.
    assert!(matches!(
        s.stores.keyring.decrypt_str(user, &context, &ct).await,
        Err(CryptoError::Shredded)
    ));
}
