//! The Cloud KMS wrapping key (official `google-cloud-kms-v1`, REST transport).
//!
//! - Wrapping is `cryptoKeys.encrypt` on the CryptoKey (KMS picks its primary version) with the
//!   wrap AAD (user id and data-key id) as `additionalAuthenticatedData`; unwrapping is
//!   `cryptoKeys.decrypt` on the same CryptoKey. KMS records the version inside its ciphertext,
//!   so data keys wrapped before a rotation still unwrap after it.
//! - End-to-end integrity as the KMS documentation describes it ("Verifying end-to-end data
//!   integrity", cloud.google.com/kms/docs/data-integrity-guidelines): every request carries the
//!   CRC32C of its plaintext or ciphertext and of the AAD; an encrypt response must say it
//!   verified both (`verifiedPlaintextCrc32c`, `verifiedAdditionalAuthenticatedDataCrc32c`) and
//!   its `ciphertextCrc32c` must match the ciphertext received; a decrypt response's
//!   `plaintextCrc32c` must match the plaintext received. Anything else is refused as a
//!   provider error (retrying may succeed) and nothing is stored.
//! - What the stored record means: `kek_id` is the CryptoKey's resource name and `kek_version`
//!   the number of the CryptoKeyVersion that wrapped it, taken from the encrypt response's
//!   `name` (`…/cryptoKeyVersions/N`). [`KeyProvider::primary_version`] is the version the
//!   last encrypt used; [`KeyProvider::current_version`] asks KMS by encrypting a fixed probe,
//!   because the role the services hold (`roles/cloudkms.cryptoKeyEncrypterDecrypter`) may
//!   encrypt and decrypt but not read the key's metadata (`cryptoKeys.get`).
//! - Every call is bounded ([`CALL_TIMEOUT`] unless set): a KMS that does not answer ends as a
//!   provider error instead of holding the request (or the rewrap job) forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use google_cloud_kms_v1::client::KeyManagementService;
use tokio::sync::OnceCell;

use super::{BoxFuture, CryptoError, KeyProvider, Wrapped};

/// `projects/P/locations/L/keyRings/R/cryptoKeys/K`, each part non-empty.
pub fn is_crypto_key_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "keyRings"
        && parts[6] == "cryptoKeys"
        && parts.iter().all(|p| !p.is_empty())
}

/// The version number of `{key}/cryptoKeyVersions/N`, when it is a version of `key`.
pub fn version_of(key: &str, version_name: &str) -> Option<u32> {
    version_name
        .strip_prefix(key)?
        .strip_prefix("/cryptoKeyVersions/")?
        .parse()
        .ok()
}

/// The longest one `encrypt` or `decrypt` call may take, retries of the client included. KMS
/// answers in tens of milliseconds; the bound stays well below the services' request timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn crc(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

/// The Cloud KMS wrapping key.
pub struct CloudKms {
    key: String,
    endpoint: Option<String>,
    client: OnceCell<KeyManagementService>,
    last_version: AtomicU32,
    timeout: Duration,
}

impl CloudKms {
    /// A provider for the CryptoKey `key`. With `endpoint` set (tests) it talks to that URL
    /// without credentials; otherwise to Cloud KMS with the default credentials (the Cloud Run
    /// service account). The client is built on first use.
    pub fn new(key: &str, endpoint: Option<String>) -> Result<Self, CryptoError> {
        if !is_crypto_key_name(key) {
            return Err(CryptoError::Provider(format!(
                "KMS_KEY_NAME {key:?} is not projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )));
        }
        Ok(Self {
            key: key.to_owned(),
            endpoint,
            client: OnceCell::new(),
            last_version: AtomicU32::new(0),
            timeout: CALL_TIMEOUT,
        })
    }

    /// The same provider with another bound per call.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `call` bounded by the call timeout; past it a provider error (retrying may succeed).
    async fn bounded<T>(
        &self,
        call: &'static str,
        future: impl Future<Output = Result<T, CryptoError>>,
    ) -> Result<T, CryptoError> {
        tokio::time::timeout(self.timeout, future)
            .await
            .unwrap_or_else(|_| {
                Err(CryptoError::Provider(format!(
                    "cloud kms {call}: no answer within {:?}",
                    self.timeout
                )))
            })
    }

    /// The CryptoKey's resource name.
    pub fn key_name(&self) -> &str {
        &self.key
    }

    async fn client(&self) -> Result<&KeyManagementService, CryptoError> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = KeyManagementService::builder();
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint.clone()).with_credentials(
                        google_cloud_auth::credentials::anonymous::Builder::new().build(),
                    );
                }
                builder
                    .build()
                    .await
                    .map_err(|e| CryptoError::Provider(format!("cloud kms client: {e}")))
            })
            .await
    }

    async fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Wrapped, CryptoError> {
        let response = self
            .bounded("encrypt", async {
                self.client()
                    .await?
                    .encrypt()
                    .set_name(&self.key)
                    .set_plaintext(plaintext.to_vec())
                    .set_additional_authenticated_data(aad.to_vec())
                    .set_plaintext_crc32c(crc(plaintext))
                    .set_additional_authenticated_data_crc32c(crc(aad))
                    .send()
                    .await
                    .map_err(call_error("encrypt"))
            })
            .await?;
        if !response.verified_plaintext_crc32c
            || !response.verified_additional_authenticated_data_crc32c
        {
            return Err(CryptoError::Provider(
                "cloud kms encrypt: the request's CRC32C was not verified".into(),
            ));
        }
        if response.ciphertext_crc32c != Some(crc(&response.ciphertext)) {
            return Err(CryptoError::Provider(
                "cloud kms encrypt: the ciphertext does not match its CRC32C".into(),
            ));
        }
        let version = version_of(&self.key, &response.name).ok_or_else(|| {
            CryptoError::Provider(format!(
                "cloud kms encrypt answered for {:?}, not a version of the configured key",
                response.name
            ))
        })?;
        self.last_version.store(version, Ordering::Relaxed);
        Ok(Wrapped {
            kek_id: self.key.clone(),
            kek_version: version,
            bytes: response.ciphertext.to_vec(),
        })
    }
}

/// A refused decryption (wrong AAD, altered ciphertext) is `Invalid`; anything else is a
/// provider error that retrying may fix.
fn call_error(call: &'static str) -> impl Fn(google_cloud_kms_v1::Error) -> CryptoError {
    move |e| {
        let invalid = e
            .status()
            .is_some_and(|s| s.code.name() == "INVALID_ARGUMENT")
            || e.http_status_code() == Some(400);
        if invalid && call == "decrypt" {
            CryptoError::Invalid
        } else {
            CryptoError::Provider(format!("cloud kms {call}: {e}"))
        }
    }
}

impl KeyProvider for CloudKms {
    fn wrap<'a>(
        &'a self,
        key: &'a [u8],
        aad: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, CryptoError>> {
        Box::pin(self.encrypt(key, aad))
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a Wrapped,
        aad: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        Box::pin(async move {
            if wrapped.kek_id != self.key {
                return Err(CryptoError::UnknownKek(
                    wrapped.kek_id.clone(),
                    wrapped.kek_version,
                ));
            }
            let response = self
                .bounded("decrypt", async {
                    self.client()
                        .await?
                        .decrypt()
                        .set_name(&self.key)
                        .set_ciphertext(wrapped.bytes.clone())
                        .set_additional_authenticated_data(aad.to_vec())
                        .set_ciphertext_crc32c(crc(&wrapped.bytes))
                        .set_additional_authenticated_data_crc32c(crc(aad))
                        .send()
                        .await
                        .map_err(call_error("decrypt"))
                })
                .await?;
            if response.plaintext_crc32c != Some(crc(&response.plaintext)) {
                return Err(CryptoError::Provider(
                    "cloud kms decrypt: the plaintext does not match its CRC32C".into(),
                ));
            }
            Ok(response.plaintext.to_vec())
        })
    }

    fn primary_version(&self) -> u32 {
        self.last_version.load(Ordering::Relaxed)
    }

    fn current_version<'a>(&'a self) -> BoxFuture<'a, Result<u32, CryptoError>> {
        Box::pin(async move {
            let probe = self
                .encrypt(b"dta-wide-version-probe", b"dta-wide-version-probe")
                .await?;
            Ok(probe.kek_version)
        })
    }
}

/// The provider as a trait object.
pub fn provider(key: &str, endpoint: Option<String>) -> Result<Arc<dyn KeyProvider>, CryptoError> {
    Ok(Arc::new(CloudKms::new(key, endpoint)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/p/locations/europe-west3/keyRings/r/cryptoKeys/k";

    #[test]
    fn only_a_full_crypto_key_name_is_accepted() {
        assert!(is_crypto_key_name(KEY));
        assert!(!is_crypto_key_name(
            "projects/p/locations/europe-west3/keyRings/r"
        ));
        assert!(!is_crypto_key_name(&format!("{KEY}/cryptoKeyVersions/1")));
        assert!(!is_crypto_key_name(
            "projects//locations/l/keyRings/r/cryptoKeys/k"
        ));
        assert!(CloudKms::new("k", None).is_err());
    }

    #[test]
    fn the_version_number_comes_from_the_version_name_of_the_same_key() {
        assert_eq!(
            version_of(KEY, &format!("{KEY}/cryptoKeyVersions/3")),
            Some(3)
        );
        assert_eq!(
            version_of(
                KEY,
                "projects/p/locations/europe-west3/keyRings/r/cryptoKeys/other/cryptoKeyVersions/3"
            ),
            None
        );
        assert_eq!(version_of(KEY, KEY), None);
    }
}
