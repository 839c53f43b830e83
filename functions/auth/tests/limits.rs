//! Rate limits shared by every instance through one Redis.

mod support;

use auth::Limits;
use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use support::*;

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn two_instances_share_the_login_limit_and_every_limiter_key_expires(pool: PgPool) {
    let prefix = unique_prefix();
    let limits = || Limits {
        per_account: 5,
        per_ip: 5,
        window_secs: 60,
        ..Limits::default()
    };
    // Two instances: separate states, routers and Redis connections, one Redis.
    let a = env_with(
        pool.clone(),
        &prefix,
        &redis_url(),
        sessions(600, 3600),
        guard_config(),
        limits(),
    );
    let b = env_with(
        pool,
        &prefix,
        &redis_url(),
        sessions(600, 3600),
        guard_config(),
        limits(),
    );
    let email = email();
    a.register_verified(&email).await;
    let checks_before = a.state.password_checks() + b.state.password_checks();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let instance = if i % 2 == 0 { &a } else { &b };
        let (s, h, p) = instance
            .call(
                "POST",
                "/v1/auth/login",
                None,
                Some(json!({"email": email, "password": "not the password at all"})),
            )
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            assert_eq!(p["code"], "rate_limited");
        } else {
            assert_eq!(p["code"], "invalid_credentials");
        }
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    let checks = a.state.password_checks() + b.state.password_checks() - checks_before;
    assert_eq!(
        checks, 5,
        "exactly five attempts reached the password check"
    );
    let keys = a.keys_with_ttl().await;
    let limiter_keys: Vec<_> = keys.iter().filter(|(k, _)| k.contains(":rl:")).collect();
    assert!(limiter_keys.len() >= 2, "{keys:?}");
    for (key, ttl) in &keys {
        assert!(
            *ttl > 0 && *ttl <= 60_000 || !key.contains(":rl:"),
            "{key}: {ttl}"
        );
        assert!(*ttl > 0, "{key} has no TTL");
    }
    // The right password is refused as well while the account is limited.
    let (s, _) = b
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_limit_applies_per_client_ip_across_accounts(pool: PgPool) {
    let limits = Limits {
        per_account: 50,
        per_ip: 3,
        window_secs: 60,
        ..Limits::default()
    };
    let env = env_with(
        pool,
        &unique_prefix(),
        &redis_url(),
        sessions(600, 3600),
        guard_config(),
        limits,
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (s, _) = env
            .post("/v1/auth/password-reset", json!({"email": email()}))
            .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 429]);
    // A client-supplied entry in front of what the load balancer appended changes nothing.
    let (s, _, _) = env
        .call_with(
            "POST",
            "/v1/auth/password-reset",
            None,
            Some(json!({"email": email()})),
            &[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 35.191.0.1")],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let (s, _, _) = env
        .call_with(
            "POST",
            "/v1/auth/password-reset",
            None,
            Some(json!({"email": email()})),
            &[("x-forwarded-for", "203.0.113.9, 35.191.0.1")],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "another client address has its own count"
    );
}
