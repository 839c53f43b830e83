//! The e-mail address at rest: encrypted under the user's data key, found and kept unique
//! through the keyed blind index, against the real PostgreSQL and Redis.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use support::*;
use uuid::Uuid;

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_stored_row_holds_the_address_only_encrypted_and_as_its_blind_index(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let typed = format!("  {}\t", email.to_uppercase());
    let (s, _) = env
        .post(
            "/v1/auth/register",
            json!({"email": typed, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // The verification mail goes to the normalised address.
    let token = env.mailed_token(&email, "verify_email");
    let (s, _) = env
        .post("/v1/auth/email-verification", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'users' ORDER BY 1",
    )
    .fetch_all(&env.state.pool)
    .await
    .unwrap();
    assert!(!columns.iter().any(|c| c == "email"), "{columns:?}");
    let (id, ct, lookup): (Uuid, Vec<u8>, String) =
        sqlx::query_as("SELECT id, email_ct, email_lookup FROM users")
            .fetch_one(&env.state.pool)
            .await
            .unwrap();
    for form in [
        email.as_bytes(),
        email.to_uppercase().as_bytes(),
        b"@example.org",
    ] {
        assert!(
            !ct.windows(form.len()).any(|w| w == form),
            "email_ct holds no plaintext"
        );
    }
    // HMAC-SHA256 under the configured secret, over the trimmed, lower-cased address.
    assert_eq!(lookup, common::testkit::email_lookup().of(&email));
    assert_ne!(
        lookup,
        common::cache::token_hash(&email),
        "keyed, not a plain hash"
    );
    let decrypted = env
        .state
        .crypto
        .decrypt_str(
            id,
            &common::crypto::field_context("users", "email", id),
            &ct,
        )
        .await
        .unwrap();
    assert_eq!(decrypted, email);
    // Another row's context does not open it (AAD binds it to this row).
    let other = common::crypto::field_context("users", "email", Uuid::new_v4());
    assert!(env.state.crypto.decrypt_str(id, &other, &ct).await.is_err());

    // Login finds the account by the index, whatever the case and whitespace typed.
    let (s, b) = env
        .post(
            "/v1/auth/login",
            json!({"email": format!(" {} ", email.to_uppercase()), "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The per-account limit is keyed by the blind index; no key names the address.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", env.redis.prefix()))
        .query_async(&mut env.redis.conn())
        .await
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!(":rl:login:acct:{lookup}"))),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains(&email)), "{keys:?}");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_second_registration_in_another_case_or_with_whitespace_is_refused(pool: PgPool) {
    let env = env(pool);
    let email = email();
    env.register_verified(&email).await;
    for typed in [
        email.to_uppercase(),
        format!(" {email} "),
        format!("\n{}", email.replacen('p', "P", 1)),
    ] {
        let (s, _) = env
            .post(
                "/v1/auth/register",
                json!({"email": typed, "password": "another long password"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "answers the same, reveals nothing");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&env.state.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one account per address");
    let kinds: Vec<String> = env.mails(&email).into_iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            "verify_email",
            "account_exists",
            "account_exists",
            "account_exists"
        ]
    );
    // The first password still holds.
    env.password_step(&email).await;
    // Directly in SQL, the unique index refuses a second row with the same index.
    let lookup = common::testkit::email_lookup().of(&email);
    let dup =
        sqlx::query("INSERT INTO users (id, email_lookup, password_hash) VALUES ($1, $2, 'x')")
            .bind(Uuid::new_v4())
            .bind(&lookup)
            .execute(&env.state.pool)
            .await
            .unwrap_err();
    assert_eq!(
        dup.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505")
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn reset_and_password_change_mail_go_to_the_decrypted_address(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let (tokens, _) = env.enrolled_user(&email).await;
    let (s, _) = env
        .post(
            "/v1/auth/password-reset",
            json!({"email": format!(" {} ", email.to_uppercase())}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    env.mailed_token(&email, "reset_password");
    let (s, _, b) = env
        .call(
            "POST",
            "/v1/auth/password",
            Some(access(&tokens)),
            Some(json!({"current_password": PASSWORD, "new_password": "a different long passphrase"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(env.mails(&email).last().unwrap().kind, "password_changed");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn registering_again_completes_a_row_left_without_its_encrypted_address(pool: PgPool) {
    let env = env(pool);
    let email = email();
    let register = json!({"email": email, "password": PASSWORD});
    assert_eq!(
        env.post("/v1/auth/register", register.clone()).await.0,
        StatusCode::ACCEPTED
    );
    // As if the first registration had stopped after inserting the row.
    sqlx::query("UPDATE users SET email_ct = NULL")
        .execute(&env.state.pool)
        .await
        .unwrap();
    assert_eq!(
        env.post("/v1/auth/register", register).await.0,
        StatusCode::ACCEPTED
    );
    let (id, ct): (Uuid, Vec<u8>) = sqlx::query_as("SELECT id, email_ct FROM users")
        .fetch_one(&env.state.pool)
        .await
        .unwrap();
    assert_eq!(env.state.email_of(id).await.unwrap(), Some(email.clone()));
    assert!(!ct.windows(email.len()).any(|w| w == email.as_bytes()));
    assert_eq!(
        env.mails(&email).len(),
        2,
        "a fresh verification link each time"
    );
}
