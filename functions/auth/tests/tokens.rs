//! Access-token verification pinned by hand-made tokens, so a crate upgrade cannot silently
//! change what is accepted (TR-03161-3 O.Auth_21).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::auth::{JwtKeys, TokenError};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use uuid::Uuid;

const KID: &str = "7";
const SECRET: &[u8] = b"the-signing-key-of-this-test-0123456789";
const ISS: &str = "dta-wide-auth";
const AUD: &str = "dta-wide-api";

/// A public key anyone may know; an attacker's classic move is to use it as an HMAC secret.
const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA8PrL8jzAb+6XIrYqELjK
HE3EBmlZjLU1UXLB38iJ7CYlsp5yaCjkbenqcKBy53675aDOqeTeX6qUwTEwjzF1
JmCJx44524+K6WQfqjKAlczIJgcnBdUEdAsxH/uJIDdA5HNRrQbDYGaTx7cNttDq
t3MxjX3tOOdKdSDgzwDz/YZP14soNDcC6L5KF/w9ts6s2ZqWb6qpVZUgP4chEEUz
xIOp8/CZcxOJPFF209PE2ElXa6kOTEdG9bExAVmqoPagxmDOJnkQ4NGYx/6prNSt
JSVkqv5Ra5PD/o/ezMnLy+xj3Ph7BIjPtil2YkU1d8MQm97OqbLd0Gv3SCpLYbTY
vwIDAQAB
-----END PUBLIC KEY-----
";

fn ring() -> JwtKeys {
    JwtKeys::new(
        &[(KID.into(), SECRET.to_vec())],
        ISS,
        AUD,
        Duration::from_secs(30),
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// header.payload.signature, the signature an HMAC-SHA256 with `secret` (empty for `None`).
fn forge(header: Value, claims: Value, secret: Option<&[u8]>) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = match secret {
        Some(s) => jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(s),
            Algorithm::HS256,
        )
        .unwrap(),
        None => String::new(),
    };
    format!("{input}.{sig}")
}

fn claims(exp_from_now: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": Uuid::new_v4(), "iss": ISS, "aud": AUD, "iat": now, "exp": now + exp_from_now, "sid": "s"})
}

fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": KID})
}

#[test]
fn a_valid_token_is_accepted() {
    let c = claims(600);
    let claims = ring()
        .verify(&forge(hs256(), c.clone(), Some(SECRET)))
        .unwrap();
    assert_eq!(serde_json::to_value(claims.sub).unwrap(), c["sub"]);
    assert_eq!(claims.sid.as_deref(), Some("s"));
}

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let t = forge(
            json!({"alg": alg, "typ": "JWT", "kid": KID}),
            claims(600),
            None,
        );
        assert!(ring().verify(&t).is_err(), "{alg}");
    }
    // An HS256 header without a signature.
    assert!(ring().verify(&forge(hs256(), claims(600), None)).is_err());
}

#[test]
fn hs256_signed_with_a_different_key_is_refused() {
    let t = forge(
        hs256(),
        claims(600),
        Some(b"another-key-of-the-same-length-0123456789"),
    );
    assert!(matches!(ring().verify(&t), Err(TokenError::Invalid(_))));
}

#[test]
fn an_rs256_public_key_used_as_hmac_secret_is_refused() {
    let pem = RSA_PUBLIC_PEM.as_bytes();
    let as_hs256 = forge(hs256(), claims(600), Some(pem));
    assert!(matches!(
        ring().verify(&as_hs256),
        Err(TokenError::Invalid(_))
    ));
    let as_rs256 = forge(
        json!({"alg": "RS256", "typ": "JWT", "kid": KID}),
        claims(600),
        Some(pem),
    );
    assert_eq!(ring().verify(&as_rs256), Err(TokenError::Malformed));
}

#[test]
fn wrong_or_missing_audience_and_wrong_issuer_are_refused() {
    let mut wrong_aud = claims(600);
    wrong_aud["aud"] = json!("another-api");
    let mut no_aud = claims(600);
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut wrong_iss = claims(600);
    wrong_iss["iss"] = json!("someone-else");
    let mut no_iss = claims(600);
    no_iss.as_object_mut().unwrap().remove("iss");
    for (name, c) in [
        ("wrong aud", wrong_aud),
        ("missing aud", no_aud),
        ("wrong iss", wrong_iss),
        ("missing iss", no_iss),
    ] {
        assert!(
            matches!(
                ring().verify(&forge(hs256(), c, Some(SECRET))),
                Err(TokenError::Invalid(_))
            ),
            "{name}"
        );
    }
}

#[test]
fn expiry_31_seconds_past_is_refused_with_a_30_second_leeway() {
    assert!(matches!(
        ring().verify(&forge(hs256(), claims(-31), Some(SECRET))),
        Err(TokenError::Invalid(_))
    ));
    assert!(
        ring()
            .verify(&forge(hs256(), claims(-25), Some(SECRET)))
            .is_ok(),
        "within the leeway"
    );
    let mut no_exp = claims(0);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(
        ring()
            .verify(&forge(hs256(), no_exp, Some(SECRET)))
            .is_err()
    );
}

#[test]
fn unknown_or_missing_key_ids_are_refused() {
    let t = forge(
        json!({"alg": "HS256", "kid": "8"}),
        claims(600),
        Some(SECRET),
    );
    assert_eq!(ring().verify(&t), Err(TokenError::UnknownKey));
    let t = forge(json!({"alg": "HS256"}), claims(600), Some(SECRET));
    assert_eq!(ring().verify(&t), Err(TokenError::UnknownKey));
}

#[test]
fn key_rotation_keeps_the_newest_three_versions_and_signs_with_the_newest() {
    use common::auth::JwtKeyFiles;
    use common::config::JwtConfig;
    let dir = std::env::temp_dir().join(format!("jwt-keys-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for v in ["3", "4", "2"] {
        std::fs::write(
            dir.join(v),
            format!("version-{v}-secret-0123456789abcdef0123\n"),
        )
        .unwrap();
    }
    let config = JwtConfig {
        jwt_secret: "version-5-secret-0123456789abcdef0123".to_owned().into(),
        jwt_key_id: "5".into(),
        jwt_previous_keys: None,
        jwt_issuer: ISS.into(),
        jwt_audience: AUD.into(),
        jwt_leeway_secs: 30,
    };
    let keys = JwtKeys::load(
        &config,
        &JwtKeyFiles {
            jwt_previous_keys_dir: Some(dir.clone()),
        },
    )
    .unwrap();
    assert_eq!(keys.kids(), ["5", "3", "4"]);
    let old = JwtKeys::new(
        &[(
            "4".into(),
            b"version-4-secret-0123456789abcdef0123".to_vec(),
        )],
        ISS,
        AUD,
        Duration::from_secs(30),
    )
    .unwrap();
    let sub = Uuid::new_v4();
    assert_eq!(
        keys.verify(&old.sign(sub, Duration::from_secs(60), None))
            .unwrap()
            .sub,
        sub
    );
    let too_old = JwtKeys::new(
        &[(
            "2".into(),
            b"version-2-secret-0123456789abcdef0123".to_vec(),
        )],
        ISS,
        AUD,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(
        keys.verify(&too_old.sign(sub, Duration::from_secs(60), None)),
        Err(TokenError::UnknownKey)
    );
    let fresh = keys.sign(sub, Duration::from_secs(60), None);
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        Some("5")
    );
    std::fs::remove_dir_all(dir).unwrap();
}
