//! Envelope encryption of sensitive fields (TR-03161-3 O.Data_1, O.Cryp_2–7).
//!
//! Key hierarchy, one key one purpose (O.Cryp_4):
//! - **Wrapping key** (KEK): in production a Cloud KMS key (HSM, 90-day rotation); locally a
//!   key file with one AES-256 key per version. It only wraps data keys, never data. Each
//!   wrapped data key records the KEK id and version that wrapped it, so rotating the KEK
//!   keeps old data readable; [`Keyring::rewrap_all`] moves data keys to the newest version.
//! - **Data key** (DEK): one random AES-256-GCM key per user, stored wrapped in `user_keys`
//!   (AAD: user id and key id, so a wrapped key cannot be moved to another user). Destroying
//!   it (erasure) makes every ciphertext of the user unreadable, copies in backups and archives
//!   included once the restored key row is re-cleaned from the erasure ledger.
//! - **Field ciphertext**: `0x01 | key id (16 bytes) | nonce (12 random bytes) | AES-256-GCM
//!   ciphertext and tag`, AAD = the field's context (table, column, row id), so a value cannot
//!   be copied into another row or column.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use uuid::Uuid;

#[cfg(feature = "kms")]
pub mod kms;

/// Length of an AES-256 key.
pub const KEY_LEN: usize = 32;
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 16 + NONCE_LEN;

/// Why encryption or decryption failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext was altered, belongs to another field or another key (never decrypts).
    #[error("ciphertext does not authenticate")]
    Invalid,
    /// The user's data key is gone: the data were erased (crypto-shredded).
    #[error("the data key was destroyed")]
    Shredded,
    /// The wrapping key version that wrapped a data key is not available.
    #[error("wrapping key {0} version {1} is not available")]
    UnknownKek(String, u32),
    /// The key file or the KMS is misconfigured or unreachable (retrying may succeed for KMS).
    #[error("key provider: {0}")]
    Provider(String),
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
    /// Reading or writing `user_keys` failed.
    #[cfg(feature = "db")]
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// A data key wrapped by the KEK, with the KEK id and version that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub kek_id: String,
    pub kek_version: u32,
    pub bytes: Vec<u8>,
}

/// A boxed future, so providers can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wraps and unwraps data keys: the local key file ([`LocalKeyFile`]) and, with the `kms`
/// feature, Cloud KMS (`kms::CloudKms`: `encrypt`/`decrypt` with the AAD as
/// `additionalAuthenticatedData`; KMS records the version in its ciphertext).
pub trait KeyProvider: Send + Sync {
    /// Wraps with the primary (newest) version.
    fn wrap<'a>(
        &'a self,
        key: &'a [u8],
        aad: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, CryptoError>>;
    /// Unwraps with the version recorded in `wrapped`.
    fn unwrap<'a>(
        &'a self,
        wrapped: &'a Wrapped,
        aad: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>>;
    /// The version new wraps use, as far as the provider knows without a call (Cloud KMS: the
    /// version its last encrypt used, 0 before the first).
    fn primary_version(&self) -> u32;
    /// The version new wraps use, asking the provider when it must (Cloud KMS decides the
    /// primary version itself).
    fn current_version<'a>(&'a self) -> BoxFuture<'a, Result<u32, CryptoError>> {
        let version = self.primary_version();
        Box::pin(async move { Ok(version) })
    }
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Provider("an AES-256 key has 32 bytes".into()))
}

fn seal(
    key: &LessSafeKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let nonce = random::<NONCE_LEN>()?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| CryptoError::Invalid)?;
    Ok((nonce.to_vec(), buf))
}

fn open(
    key: &LessSafeKey,
    aad: &[u8],
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Invalid)?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Invalid)?;
    Ok(plain.to_vec())
}

/// The local wrapping key: a file of `version=hex` lines (64 hex digits each); the highest
/// version is primary. Rotation adds a line; old lines stay until no data key uses them.
pub struct LocalKeyFile {
    id: String,
    versions: BTreeMap<u32, LessSafeKey>,
}

impl LocalKeyFile {
    /// Parses the file's text; `id` names the key in the wrapped records.
    pub fn parse(id: &str, text: &str) -> Result<Self, CryptoError> {
        let bad = |line: &str| {
            CryptoError::Provider(format!(
                "key file line {line:?} is not version=64 hex digits"
            ))
        };
        let mut versions = BTreeMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (v, hex) = line.split_once('=').ok_or_else(|| bad("…"))?;
            let version: u32 = v.trim().parse().map_err(|_| bad(v))?;
            let hex = hex.trim();
            // Hex digits only: a non-ASCII character would split the pairs below mid-character.
            if hex.len() != KEY_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(v));
            }
            let bytes = (0..KEY_LEN)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad(v))?;
            // A repeated version would silently replace the key older data keys were wrapped by.
            if versions.insert(version, aes_key(&bytes)?).is_some() {
                return Err(CryptoError::Provider(format!(
                    "key file names version {version} twice"
                )));
            }
        }
        if versions.is_empty() {
            return Err(CryptoError::Provider("the key file holds no key".into()));
        }
        Ok(Self {
            id: id.to_owned(),
            versions,
        })
    }

    /// Reads a key file.
    pub fn load(path: &std::path::Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CryptoError::Provider(format!("key file {}: {e}", path.display())))?;
        Self::parse(&format!("local:{}", path.display()), &text)
    }

    /// A key file line with a fresh random key (for set-up scripts and tests).
    pub fn generate_line(version: u32) -> Result<String, CryptoError> {
        let key = random::<KEY_LEN>()?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{version}={hex}"))
    }
}

impl KeyProvider for LocalKeyFile {
    fn wrap<'a>(
        &'a self,
        key: &'a [u8],
        aad: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, CryptoError>> {
        Box::pin(async move {
            let (version, kek) = self
                .versions
                .last_key_value()
                .ok_or_else(|| CryptoError::Provider("no key".into()))?;
            let (mut nonce, sealed) = seal(kek, aad, key)?;
            nonce.extend_from_slice(&sealed);
            Ok(Wrapped {
                kek_id: self.id.clone(),
                kek_version: *version,
                bytes: nonce,
            })
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a Wrapped,
        aad: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        Box::pin(async move {
            let kek = self.versions.get(&wrapped.kek_version).ok_or_else(|| {
                CryptoError::UnknownKek(wrapped.kek_id.clone(), wrapped.kek_version)
            })?;
            if wrapped.bytes.len() < NONCE_LEN {
                return Err(CryptoError::Invalid);
            }
            let (nonce, sealed) = wrapped.bytes.split_at(NONCE_LEN);
            open(kek, aad, nonce, sealed)
        })
    }

    fn primary_version(&self) -> u32 {
        self.versions
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default()
    }
}

/// A user's unwrapped data key; encrypts and decrypts fields without further I/O.
pub struct DataKey {
    id: Uuid,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish()
    }
}

impl DataKey {
    /// A key from its id and raw bytes.
    pub fn new(id: Uuid, bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            id,
            key: aes_key(bytes)?,
        })
    }

    /// The key id stored in every ciphertext.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Encrypts one field value; `context` names the field and row (the AAD).
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (nonce, sealed) = seal(&self.key, context.as_bytes(), plaintext)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value [`DataKey::encrypt`] produced for the same context.
    pub fn decrypt(&self, context: &str, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.len() < HEADER_LEN || ciphertext[0] != FORMAT_V1 {
            return Err(CryptoError::Invalid);
        }
        if key_id_of(ciphertext) != Some(self.id) {
            return Err(CryptoError::Invalid);
        }
        let (nonce, sealed) = ciphertext[17..].split_at(NONCE_LEN);
        open(&self.key, context.as_bytes(), nonce, sealed)
    }

    /// Encrypts a text field.
    pub fn encrypt_str(&self, context: &str, text: &str) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(context, text.as_bytes())
    }

    /// Decrypts a text field.
    pub fn decrypt_str(&self, context: &str, ciphertext: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(context, ciphertext)?).map_err(|_| CryptoError::Invalid)
    }
}

/// The data key id a ciphertext names.
pub fn key_id_of(ciphertext: &[u8]) -> Option<Uuid> {
    (ciphertext.len() >= HEADER_LEN && ciphertext[0] == FORMAT_V1)
        .then(|| Uuid::from_slice(&ciphertext[1..17]).ok())
        .flatten()
}

/// The AAD of a field value: the value belongs to this column of this row.
pub fn field_context(table: &str, column: &str, row: Uuid) -> String {
    format!("{table}.{column}:{row}")
}

/// The e-mail address as it is compared: trimmed and lower-cased (what registration stores).
pub fn normalise_email(address: &str) -> String {
    address.trim().to_lowercase()
}

/// Shortest accepted `EMAIL_LOOKUP_KEY`: 32 bytes, the HMAC-SHA256 output length (RFC 2104 §3
/// recommends keys no shorter than the hash output).
pub const EMAIL_LOOKUP_KEY_MIN: usize = 32;

/// The keyed blind index of e-mail addresses (`users.email_lookup`): HMAC-SHA256 (RFC 2104)
/// over the normalised address with a server secret, hex. The address itself is stored only
/// encrypted under the user's data key; the index finds the account at login and keeps
/// addresses unique without revealing them, and without the secret it cannot be recomputed
/// from a guessed address (a plain hash could, O.Cryp_4: one key one purpose).
#[derive(Clone)]
pub struct EmailLookup {
    key: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for EmailLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailLookup([REDACTED])")
    }
}

/// Where the blind-index secret is.
#[derive(Debug, Clone, clap::Args)]
pub struct EmailLookupConfig {
    /// Secret of the e-mail blind index (HMAC-SHA256), at least 32 bytes (Secret Manager
    /// `EMAIL_LOOKUP_KEY`). Changing it orphans every stored index, so it is never rotated
    /// without re-indexing.
    #[arg(long, env = "EMAIL_LOOKUP_KEY", hide_env_values = true)]
    pub email_lookup_key: secrecy::SecretString,
}

impl EmailLookup {
    /// An index keyed by `secret`; refused when shorter than [`EMAIL_LOOKUP_KEY_MIN`].
    pub fn new(secret: &[u8]) -> Result<Self, CryptoError> {
        if secret.len() < EMAIL_LOOKUP_KEY_MIN {
            return Err(CryptoError::Provider(format!(
                "EMAIL_LOOKUP_KEY must be at least {EMAIL_LOOKUP_KEY_MIN} bytes"
            )));
        }
        Ok(Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
        })
    }

    /// The index from the configuration.
    pub fn from_config(config: &EmailLookupConfig) -> Result<Self, CryptoError> {
        use secrecy::ExposeSecret;
        Self::new(config.email_lookup_key.expose_secret().as_bytes())
    }

    /// The index of an address (normalised first): 64 lower-case hex digits.
    pub fn of(&self, address: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.key, normalise_email(address).as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn wrap_aad(user: Uuid, key_id: Uuid) -> Vec<u8> {
    let mut aad = b"dta-wide-dek:".to_vec();
    aad.extend_from_slice(user.as_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// Where the wrapping key is.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyConfig {
    /// Local wrapping-key file (`version=hex` lines). Development and tests only; production
    /// names a Cloud KMS key instead.
    #[arg(long, env = "DATA_KEY_FILE")]
    pub data_key_file: Option<std::path::PathBuf>,
    /// Cloud KMS key wrapping the data keys
    /// (`projects/P/locations/europe-west3/keyRings/R/cryptoKeys/K`).
    #[arg(long, env = "KMS_KEY_NAME")]
    pub kms_key_name: Option<String>,
    /// Base URL of a Cloud KMS stand-in (tests only); unset in production, where the client
    /// talks to Cloud KMS with the default credentials.
    #[arg(long, env = "KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
}

impl KeyConfig {
    /// The configured provider: the key file locally, Cloud KMS in production. Naming both is
    /// refused, so a deployment cannot silently wrap with a local key.
    pub fn provider(&self) -> Result<Arc<dyn KeyProvider>, CryptoError> {
        match (&self.data_key_file, &self.kms_key_name) {
            (Some(_), Some(_)) => Err(CryptoError::Provider(
                "set either DATA_KEY_FILE (local) or KMS_KEY_NAME, not both".into(),
            )),
            (Some(path), None) => Ok(Arc::new(LocalKeyFile::load(path)?)),
            #[cfg(feature = "kms")]
            (None, Some(name)) => kms::provider(name, self.kms_endpoint.clone()),
            #[cfg(not(feature = "kms"))]
            (None, Some(_)) => Err(CryptoError::Provider(
                "this binary is built without the Cloud KMS provider (feature kms)".into(),
            )),
            (None, None) => Err(CryptoError::Provider(
                "set DATA_KEY_FILE (local) or KMS_KEY_NAME".into(),
            )),
        }
    }
}

/// The users' data keys in `user_keys`, wrapped by the provider.
#[cfg(feature = "db")]
#[derive(Clone)]
pub struct Keyring {
    pool: sqlx::PgPool,
    provider: Arc<dyn KeyProvider>,
}

#[cfg(feature = "db")]
impl Keyring {
    /// A keyring on this pool and provider.
    pub fn new(pool: sqlx::PgPool, provider: Arc<dyn KeyProvider>) -> Self {
        Self { pool, provider }
    }

    /// The user's data key, created on first use.
    pub async fn data_key(&self, user: Uuid) -> Result<DataKey, CryptoError> {
        if let Some(key) = self.existing(user).await? {
            return Ok(key);
        }
        let key_id = Uuid::new_v4();
        let bytes = random::<KEY_LEN>()?;
        let wrapped = self.provider.wrap(&bytes, &wrap_aad(user, key_id)).await?;
        let inserted = sqlx::query(
            "INSERT INTO user_keys (user_id, key_id, kek_id, kek_version, wrapped) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(key_id)
        .bind(&wrapped.kek_id)
        .bind(i64::from(wrapped.kek_version))
        .bind(&wrapped.bytes)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return DataKey::new(key_id, &bytes);
        }
        // Another request created it first.
        self.existing(user).await?.ok_or(CryptoError::Shredded)
    }

    /// The user's data key if one exists.
    pub async fn existing(&self, user: Uuid) -> Result<Option<DataKey>, CryptoError> {
        let row: Option<(Uuid, String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT key_id, kek_id, kek_version, wrapped FROM user_keys WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some((key_id, kek_id, kek_version, bytes)) = row else {
            return Ok(None);
        };
        let wrapped = Wrapped {
            kek_id,
            kek_version: u32::try_from(kek_version).unwrap_or_default(),
            bytes,
        };
        let raw = self
            .provider
            .unwrap(&wrapped, &wrap_aad(user, key_id))
            .await?;
        DataKey::new(key_id, &raw).map(Some)
    }

    /// Decrypts one of the user's values; [`CryptoError::Shredded`] when the key is gone.
    pub async fn decrypt_str(
        &self,
        user: Uuid,
        context: &str,
        ciphertext: &[u8],
    ) -> Result<String, CryptoError> {
        let key = self.existing(user).await?.ok_or(CryptoError::Shredded)?;
        key.decrypt_str(context, ciphertext)
    }

    /// Destroys the user's data key (crypto-shredding); `false` when there was none.
    pub async fn destroy<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        ex: E,
        user: Uuid,
    ) -> Result<bool, CryptoError> {
        let n = sqlx::query("DELETE FROM user_keys WHERE user_id = $1")
            .bind(user)
            .execute(ex)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// After a wrapping-key rotation: re-wraps every data key still wrapped by an older
    /// version under the primary one; returns how many. The data keys themselves do not
    /// change, so no field is re-encrypted.
    pub async fn rewrap_all(&self) -> Result<u64, CryptoError> {
        let primary = i64::from(self.provider.current_version().await?);
        let rows: Vec<(Uuid, Uuid, String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, key_id, kek_id, kek_version, wrapped FROM user_keys WHERE kek_version <> $1",
        )
        .bind(primary)
        .fetch_all(&self.pool)
        .await?;
        let mut n = 0;
        for (user, key_id, kek_id, kek_version, bytes) in rows {
            let aad = wrap_aad(user, key_id);
            let old = Wrapped {
                kek_id,
                kek_version: u32::try_from(kek_version).unwrap_or_default(),
                bytes,
            };
            let raw = self.provider.unwrap(&old, &aad).await?;
            let new = self.provider.wrap(&raw, &aad).await?;
            n += sqlx::query(
                "UPDATE user_keys SET kek_id = $3, kek_version = $4, wrapped = $5, rewrapped_at = now() \
                 WHERE user_id = $1 AND key_id = $2",
            )
            .bind(user)
            .bind(key_id)
            .bind(&new.kek_id)
            .bind(i64::from(new.kek_version))
            .bind(&new.bytes)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(lines: &[String]) -> LocalKeyFile {
        LocalKeyFile::parse("test", &lines.join("\n")).unwrap()
    }

    #[test]
    fn the_email_lookup_is_hmac_sha256_of_the_normalised_address() {
        // Expected tag computed independently:
        // printf 'alice@example.test' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0b…0b (32 bytes)
        let lookup = EmailLookup::new(&[0x0b; 32]).unwrap();
        let tag = lookup.of("  Alice@Example.TEST \n");
        assert_eq!(
            tag,
            "8aa56416a799939868e41ffd2d01ee92f8c6f026320297b482acb56973776de0"
        );
        let other = EmailLookup::new(&[0x0c; 32]).unwrap();
        assert_ne!(tag, other.of("alice@example.test"));
        assert_ne!(tag, lookup.of("bob@example.test"));
        assert!(EmailLookup::new(&[0x0b; 31]).is_err());
        assert_eq!(format!("{lookup:?}"), "EmailLookup([REDACTED])");
    }

    #[test]
    fn a_field_round_trips_and_each_encryption_uses_a_fresh_nonce() {
        let key = DataKey::new(Uuid::new_v4(), &random::<KEY_LEN>().unwrap()).unwrap();
        let a = key
            .encrypt_str("diary_entries.comment:1", "schlecht geschlafen")
            .unwrap();
        let b = key
            .encrypt_str("diary_entries.comment:1", "schlecht geschlafen")
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(key_id_of(&a), Some(key.id()));
        assert_eq!(
            key.decrypt_str("diary_entries.comment:1", &a).unwrap(),
            "schlecht geschlafen"
        );
    }

    #[test]
    fn a_value_moved_to_another_row_or_altered_does_not_decrypt() {
        let key = DataKey::new(Uuid::new_v4(), &random::<KEY_LEN>().unwrap()).unwrap();
        let mut ct = key.encrypt_str("diary_entries.comment:1", "x").unwrap();
        assert!(matches!(
            key.decrypt_str("diary_entries.comment:2", &ct),
            Err(CryptoError::Invalid)
        ));
        let last = ct.len() - 1;
        ct[last] ^= 1;
        assert!(matches!(
            key.decrypt_str("diary_entries.comment:1", &ct),
            Err(CryptoError::Invalid)
        ));
        let other = DataKey::new(Uuid::new_v4(), &random::<KEY_LEN>().unwrap()).unwrap();
        let ct = key.encrypt_str("c", "x").unwrap();
        assert!(other.decrypt_str("c", &ct).is_err());
    }

    #[tokio::test]
    async fn rotating_the_wrapping_key_keeps_old_wraps_readable() {
        let v1 = LocalKeyFile::generate_line(1).unwrap();
        let old = key_file(std::slice::from_ref(&v1));
        let dek = random::<KEY_LEN>().unwrap();
        let wrapped = old.wrap(&dek, b"aad").await.unwrap();
        assert_eq!(wrapped.kek_version, 1);

        let rotated = key_file(&[v1, LocalKeyFile::generate_line(2).unwrap()]);
        assert_eq!(rotated.primary_version(), 2);
        assert_eq!(rotated.unwrap(&wrapped, b"aad").await.unwrap(), dek);
        assert_eq!(rotated.wrap(&dek, b"aad").await.unwrap().kek_version, 2);
        assert!(rotated.unwrap(&wrapped, b"other").await.is_err());

        let without_v1 = key_file(&[LocalKeyFile::generate_line(2).unwrap()]);
        assert!(matches!(
            without_v1.unwrap(&wrapped, b"aad").await,
            Err(CryptoError::UnknownKek(_, 1))
        ));
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        assert!(LocalKeyFile::parse("t", "").is_err());
        assert!(LocalKeyFile::parse("t", "1=abcd").is_err());
        assert!(LocalKeyFile::parse("t", &format!("x={}", "0".repeat(64))).is_err());
    }

    #[test]
    fn a_key_file_with_non_hex_characters_or_a_repeated_version_is_refused_without_panic() {
        // 64 bytes, but `é` is two: the pairs would split it.
        let split = format!("a{}a", "é".repeat(31));
        assert_eq!(split.len(), 64);
        for text in [
            format!("1={split}"),
            format!("1={}", "g".repeat(64)),
            format!("1=+{}", "0".repeat(63)),
        ] {
            assert!(
                matches!(
                    LocalKeyFile::parse("t", &text),
                    Err(CryptoError::Provider(_))
                ),
                "{text}"
            );
        }
        let one = LocalKeyFile::generate_line(1).unwrap();
        let again = LocalKeyFile::generate_line(1).unwrap();
        assert!(matches!(
            LocalKeyFile::parse("t", &format!("{one}\n{again}")),
            Err(CryptoError::Provider(m)) if m.contains("twice")
        ));
        let two = LocalKeyFile::generate_line(2).unwrap();
        assert_eq!(
            LocalKeyFile::parse("t", &format!("{one}\r\n{two}\r\n"))
                .unwrap()
                .primary_version(),
            2
        );
    }
}
