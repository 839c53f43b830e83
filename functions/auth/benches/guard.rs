//! What authentication costs per request: HS256 verification alone, the data-route guard
//! (verification + session check + per-user counter in one Redis round trip, against the
//! local Redis at REDIS_URL), and the Argon2id verification that dominates a login.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use common::auth::JwtKeys;
use common::cache::{Redis, RedisConfig, SessionConfig, Sessions};
use common::guard::{Guard, GuardConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter();
    let keys = Arc::new(
        JwtKeys::new(
            &[("1".into(), b"bench-key-0123456789abcdef0123456789".to_vec())],
            "dta-wide-auth",
            "dta-wide-api",
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    let redis = Redis::connect(&RedisConfig {
        redis_url: std::env::var("REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
            .into(),
        redis_key_prefix: format!("bench-{}", Uuid::new_v4().simple()),
        redis_timeout_ms: 500,
    })
    .unwrap();
    let sessions_config = SessionConfig {
        session_idle_timeout_secs: 600,
        session_absolute_timeout_secs: 600,
    };
    let user = Uuid::new_v4();
    let session = rt
        .block_on(Sessions::new(redis.clone(), sessions_config).create(user))
        .unwrap();
    let token = keys.sign(user, Duration::from_secs(600), Some(session.id.clone()));
    let guard = Guard::new(
        keys.clone(),
        redis,
        sessions_config,
        &GuardConfig {
            data_rate_limit_per_min: u32::MAX,
            min_app_version: None,
        },
    );

    c.bench_function("hs256_verify", |b| b.iter(|| keys.verify(&token).unwrap()));
    c.bench_function("guard_check_one_redis_round_trip", |b| {
        b.iter(|| rt.block_on(guard.check(&token)).map(|_| ()).unwrap())
    });

    let params = Params::new(auth::ARGON2_M_KIB, auth::ARGON2_T, auth::ARGON2_P, None).unwrap();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon
        .hash_password(
            b"correct horse battery staple",
            &SaltString::generate(&mut OsRng),
        )
        .unwrap()
        .to_string();
    let mut group = c.benchmark_group("login");
    group.sample_size(20);
    group.bench_function("argon2id_verify_m19456_t2_p1", |b| {
        b.iter(|| {
            let parsed = PasswordHash::new(&hash).unwrap();
            argon
                .verify_password(b"correct horse battery staple", &parsed)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
