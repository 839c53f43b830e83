//! Access tokens: HS256 JWTs with the algorithm pinned, issuer, audience and expiry checked
//! with an explicit leeway; `kid` selects one of several key versions (Secret Manager keeps 3).
//!
//! Rotation: add a Secret Manager version, redeploy the data services (they accept it) and then
//! `auth` (it signs with it); tokens of the older versions keep verifying until they expire.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::JwtConfig;

/// HS256 keys shorter than the hash output are weak (RFC 7518 §3.2; BSI TR-02102-1).
pub const MIN_KEY_BYTES: usize = 32;

/// The claims of an access token: only what the services need, no e-mail, no health data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Pseudonymous user id.
    pub sub: Uuid,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Session id, so a revoked session's tokens can be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Why a token was refused. All of them answer 401; the reason is logged, never returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The header is unreadable or names another algorithm than HS256.
    #[error("malformed token or algorithm other than HS256")]
    Malformed,
    /// No `kid`, or a `kid` that is not among the configured key versions.
    #[error("unknown key id")]
    UnknownKey,
    /// Signature, issuer, audience, expiry or a required claim failed.
    #[error("token rejected: {0}")]
    Invalid(String),
}

/// Key versions kept: the signing one and the two before it (the design's Secret Manager rule).
pub const MAX_KEY_VERSIONS: usize = 3;

/// Older key versions as files: Cloud Run mounts the previous Secret Manager versions of
/// JWT_SECRET into one directory, one file per version named by the version number.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtKeyFiles {
    /// Directory of older JWT_SECRET versions still accepted, one file per version named by
    /// its `kid`; the newest versions win when there are more than 3 in all.
    #[arg(long, env = "JWT_PREVIOUS_KEYS_DIR")]
    pub jwt_previous_keys_dir: Option<std::path::PathBuf>,
}

/// A configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyConfigError(String);

/// The key ring used to sign and verify access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    current_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self.decoding.keys().collect();
        kids.sort();
        f.debug_struct("JwtKeys")
            .field("current_kid", &self.current_kid)
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtKeys {
    /// Builds the ring; the first key signs, all verify.
    pub fn new(
        keys: &[(String, Vec<u8>)],
        issuer: &str,
        audience: &str,
        leeway: Duration,
    ) -> Result<Self, KeyConfigError> {
        let Some((current_kid, current)) = keys.first() else {
            return Err(KeyConfigError("no JWT key configured".into()));
        };
        let mut decoding = HashMap::new();
        for (kid, secret) in keys {
            if kid.is_empty() {
                return Err(KeyConfigError("empty JWT key id".into()));
            }
            if secret.len() < MIN_KEY_BYTES {
                return Err(KeyConfigError(format!(
                    "JWT key {kid} is shorter than {MIN_KEY_BYTES} bytes"
                )));
            }
            decoding.insert(kid.clone(), DecodingKey::from_secret(secret));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Self {
            current_kid: current_kid.clone(),
            encoding: EncodingKey::from_secret(current),
            decoding,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// From the environment: JWT_SECRET (current) plus JWT_PREVIOUS_KEYS (`kid=secret ...`).
    pub fn from_config(config: &JwtConfig) -> Result<Self, KeyConfigError> {
        let mut keys = vec![(
            config.jwt_key_id.clone(),
            config.jwt_secret.expose_secret().as_bytes().to_vec(),
        )];
        if let Some(prev) = &config.jwt_previous_keys {
            for entry in prev.expose_secret().split_whitespace() {
                let Some((kid, secret)) = entry.split_once('=') else {
                    return Err(KeyConfigError(
                        "JWT_PREVIOUS_KEYS entries must look like kid=secret".into(),
                    ));
                };
                keys.push((kid.to_owned(), secret.as_bytes().to_vec()));
            }
        }
        Self::new(
            &keys,
            &config.jwt_issuer,
            &config.jwt_audience,
            Duration::from_secs(config.jwt_leeway_secs),
        )
    }

    /// The ring of a service: JWT_SECRET signs, older versions come from JWT_PREVIOUS_KEYS and
    /// from the files of JWT_PREVIOUS_KEYS_DIR; only the newest [`MAX_KEY_VERSIONS`] are kept
    /// (Secret Manager keeps the latest 3 versions of JWT_SECRET).
    pub fn load(config: &JwtConfig, files: &JwtKeyFiles) -> Result<Self, KeyConfigError> {
        let mut previous: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(prev) = &config.jwt_previous_keys {
            for entry in prev.expose_secret().split_whitespace() {
                let Some((kid, secret)) = entry.split_once('=') else {
                    return Err(KeyConfigError(
                        "JWT_PREVIOUS_KEYS entries must look like kid=secret".into(),
                    ));
                };
                previous.push((kid.to_owned(), secret.as_bytes().to_vec()));
            }
        }
        if let Some(dir) = &files.jwt_previous_keys_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                KeyConfigError(format!("JWT_PREVIOUS_KEYS_DIR {}: {e}", dir.display()))
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| KeyConfigError(e.to_string()))?;
                let kid = entry.file_name().to_string_lossy().into_owned();
                if kid.starts_with('.') || !entry.path().is_file() {
                    continue;
                }
                let secret = std::fs::read(entry.path())
                    .map_err(|e| KeyConfigError(format!("JWT key file {kid}: {e}")))?;
                previous.push((kid, secret.trim_ascii().to_vec()));
            }
        }
        previous.retain(|(kid, _)| kid != &config.jwt_key_id);
        // Newest first: Secret Manager versions are numbers; other ids sort after them.
        previous.sort_by(
            |(a, _), (b, _)| match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) => b.cmp(&a),
                (Ok(_), Err(_)) => std::cmp::Ordering::Less,
                (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
                (Err(_), Err(_)) => b.cmp(a),
            },
        );
        previous.dedup_by(|a, b| a.0 == b.0);
        if previous.len() >= MAX_KEY_VERSIONS {
            let dropped: Vec<_> = previous[MAX_KEY_VERSIONS - 1..]
                .iter()
                .map(|(k, _)| k.clone())
                .collect();
            tracing::warn!(
                ?dropped,
                "more JWT key versions than kept; the oldest are no longer accepted"
            );
            previous.truncate(MAX_KEY_VERSIONS - 1);
        }
        let mut keys = vec![(
            config.jwt_key_id.clone(),
            config.jwt_secret.expose_secret().as_bytes().to_vec(),
        )];
        keys.extend(previous);
        Self::new(
            &keys,
            &config.jwt_issuer,
            &config.jwt_audience,
            Duration::from_secs(config.jwt_leeway_secs),
        )
    }

    /// Key ids accepted, the signing one first.
    pub fn kids(&self) -> Vec<String> {
        let mut rest: Vec<_> = self
            .decoding
            .keys()
            .filter(|k| **k != self.current_kid)
            .cloned()
            .collect();
        rest.sort();
        let mut out = vec![self.current_kid.clone()];
        out.extend(rest);
        out
    }

    /// Key id new tokens are signed with.
    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    /// Signs an access token for `sub`, valid for `ttl`.
    pub fn sign(&self, sub: Uuid, ttl: Duration, sid: Option<String>) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl.as_secs() as i64,
            iat: now,
            sid,
        };
        self.sign_claims(&claims)
    }

    /// Signs arbitrary claims with the current key (tests use it for expired tokens).
    pub fn sign_claims(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_kid.clone());
        // Encoding HS256 with a valid key cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies a compact JWS and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(kids: &[(&str, &str)]) -> JwtKeys {
        let keys: Vec<_> = kids
            .iter()
            .map(|(k, s)| (k.to_string(), s.as_bytes().to_vec()))
            .collect();
        JwtKeys::new(&keys, "iss", "aud", Duration::from_secs(30)).unwrap()
    }

    const K1: &str = "0123456789abcdef0123456789abcdef-one";
    const K2: &str = "0123456789abcdef0123456789abcdef-two";

    #[test]
    fn a_token_signed_with_an_older_key_version_verifies_by_kid() {
        let old = ring(&[("1", K1)]);
        let rotated = ring(&[("2", K2), ("1", K1)]);
        let sub = Uuid::new_v4();
        let token = old.sign(sub, Duration::from_secs(60), None);
        assert_eq!(rotated.verify(&token).unwrap().sub, sub);
        let fresh = rotated.sign(sub, Duration::from_secs(60), None);
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
            Some("2")
        );
        assert_eq!(old.verify(&fresh), Err(TokenError::UnknownKey));
    }

    #[test]
    fn alg_none_and_foreign_keys_and_expired_tokens_are_refused() {
        let keys = ring(&[("1", K1)]);
        let sub = Uuid::new_v4();
        // alg none: header {"alg":"none","kid":"1"}
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT","kid":"1"}"#),
            b64(&format!(
                r#"{{"sub":"{sub}","iss":"iss","aud":"aud","exp":9999999999,"iat":0}}"#
            ))
        );
        assert_eq!(keys.verify(&none), Err(TokenError::Malformed));
        let other = ring(&[("1", K2)]).sign(sub, Duration::from_secs(60), None);
        assert!(matches!(keys.verify(&other), Err(TokenError::Invalid(_))));
        let now = chrono::Utc::now().timestamp();
        let expired = keys.sign_claims(&Claims {
            sub,
            iss: "iss".into(),
            aud: "aud".into(),
            exp: now - 31,
            iat: now - 100,
            sid: None,
        });
        assert!(matches!(keys.verify(&expired), Err(TokenError::Invalid(_))));
        let within_leeway = keys.sign_claims(&Claims {
            sub,
            iss: "iss".into(),
            aud: "aud".into(),
            exp: now - 20,
            iat: now - 100,
            sid: None,
        });
        assert_eq!(keys.verify(&within_leeway).unwrap().sub, sub);
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let keys = ring(&[("1", K1)]);
        let now = chrono::Utc::now().timestamp();
        for (iss, aud) in [("other", "aud"), ("iss", "other")] {
            let t = keys.sign_claims(&Claims {
                sub: Uuid::new_v4(),
                iss: iss.into(),
                aud: aud.into(),
                exp: now + 60,
                iat: now,
                sid: None,
            });
            assert!(
                matches!(keys.verify(&t), Err(TokenError::Invalid(_))),
                "{iss} {aud}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_at_start_up() {
        let keys = vec![("1".to_string(), b"short".to_vec())];
        assert!(JwtKeys::new(&keys, "i", "a", Duration::from_secs(1)).is_err());
    }

    fn b64(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
