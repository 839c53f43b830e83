//! The consent register against a real PostgreSQL (one fresh database per test).

mod support;

use axum::http::StatusCode;
use common::consent::Purpose;
use common::testkit;
use privacy::{ApiDoc, routes};
use serde_json::json;
use sqlx::PgPool;
use utoipa::OpenApi;

#[test]
fn every_served_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut served = routes().routes();
    served.extend(privacy::push::routes().routes());
    let (missing, extra) = common::openapi::route_diff(&served, &doc);
    assert!(missing.is_empty(), "served but undocumented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_new_user_sees_every_purpose_ungranted_with_its_text(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user_without_consent(&pool).await;
    let (status, body) = support::call(&s, "GET", "/v1/me/consents", user, None).await;
    assert_eq!(status, StatusCode::OK);
    let purposes: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        [
            "intended_use",
            "care_effect_evidence",
            "price_evidence",
            "product_improvement"
        ]
    );
    for c in body.as_array().unwrap() {
        assert_eq!(c["granted"], false);
        // The intended use is at version 2 (its withdrawal erases the account, and says so).
        let in_force = if c["purpose"] == "intended_use" { 2 } else { 1 };
        assert_eq!(c["current_version"], in_force);
        assert!(c["text"].as_str().unwrap().len() > 100);
        assert_eq!(c["required"], c["purpose"] == "intended_use");
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn grants_and_withdrawals_are_kept_as_a_history_per_purpose(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user_without_consent(&pool).await;
    let grant = |purpose: &str| {
        let version = if purpose == "intended_use" { 2 } else { 1 };
        json!({"purpose": purpose, "version": version})
    };

    let (status, e) = support::call(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some(grant("intended_use")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(e["action"], "granted");
    let (status, _) = support::call(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some(grant("intended_use")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "granting again records nothing new");
    assert!(
        common::consent::granted(&pool, user, Purpose::IntendedUse)
            .await
            .unwrap()
    );
    // Purpose 4 is its own consent: granting Nr. 1 does not grant it.
    assert!(
        !common::consent::granted(&pool, user, Purpose::ProductImprovement)
            .await
            .unwrap()
    );
    let (status, _) = support::call(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some(grant("product_improvement")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, e) = support::call(
        &s,
        "DELETE",
        "/v1/me/consents/product_improvement",
        user,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["action"], "withdrawn");
    let (status, p) = support::call(
        &s,
        "DELETE",
        "/v1/me/consents/product_improvement",
        user,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to withdraw");
    assert_eq!(p["field"], "purpose");
    let (status, p) = support::call(&s, "DELETE", "/v1/me/consents/advertising", user, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such purpose");
    assert_eq!(p["field"], "purpose");

    let (_, now) = support::call(&s, "GET", "/v1/me/consents", user, None).await;
    let state_of = |p: &str| {
        now.as_array()
            .unwrap()
            .iter()
            .find(|c| c["purpose"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(state_of("intended_use")["granted"], true);
    assert_eq!(state_of("intended_use")["decided_version"], 2);
    assert_eq!(state_of("product_improvement")["granted"], false);

    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE subject_ref = $1 AND action LIKE 'consent.%'",
    )
    .bind(privacy::erasure::subject_hash(user))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 3, "two grants and one withdrawal are audited");
    assert_eq!(privacy::audit::verify(&pool, None).await.unwrap(), vec![]);

    let (status, history) = support::call(&s, "GET", "/v1/me/consents/history", user, None).await;
    assert_eq!(status, StatusCode::OK);
    let seen: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["purpose"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("intended_use".to_owned(), "granted".to_owned()),
            ("product_improvement".to_owned(), "granted".to_owned()),
            ("product_improvement".to_owned(), "withdrawn".to_owned()),
        ]
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_grant_must_name_the_text_in_force(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user_without_consent(&pool).await;
    let (status, p) = support::call(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some(json!({"purpose": "intended_use", "version": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["code"], "consent_text_outdated");
    let (status, _) = support::call(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some(json!({"purpose": "advertising", "version": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
