//! Outgoing e-mail: Mailgun's EU API in production, a directory of JSON files locally.
//!
//! The directory sink (`MAIL_SINK_DIR`) writes one `<millis>-<uuid>.json` file per message
//! (`{"to","subject","text","kind"}`); tests and the local demo read the verification and
//! reset tokens from there. No SMTP anywhere. Message bodies carry single-use tokens and are
//! never logged.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Where mail goes.
#[derive(Debug, Clone, clap::Args)]
pub struct MailConfig {
    /// Mailgun API key (Secret Manager MAILGUN_API_KEY); with MAILGUN_DOMAIN selects Mailgun.
    #[arg(long, env = "MAILGUN_API_KEY")]
    pub mailgun_api_key: Option<SecretString>,
    /// Mailgun sending domain.
    #[arg(long, env = "MAILGUN_DOMAIN")]
    pub mailgun_domain: Option<String>,
    /// Mailgun API base; the EU region keeps the data in the EU.
    #[arg(
        long,
        env = "MAILGUN_API_BASE",
        default_value = "https://api.eu.mailgun.net"
    )]
    pub mailgun_api_base: String,
    /// Sender address.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "dta-wide <no-reply@dta-wide.de>"
    )]
    pub mail_from: String,
    /// Local development: write each message as a JSON file into this directory instead.
    #[arg(long, env = "MAIL_SINK_DIR")]
    pub mail_sink_dir: Option<PathBuf>,
}

/// One message.
#[derive(Clone, Serialize, Deserialize)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// What the message is for: `verify_email`, `reset_password`, `password_changed`,
    /// `account_exists`.
    pub kind: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail").field("kind", &self.kind).finish()
    }
}

/// Sending failed; the request answers 503.
#[derive(Debug, thiserror::Error)]
#[error("mail: {0}")]
pub struct MailError(pub String);

/// A boxed send future.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + 'a>>;

/// Sends mail.
pub trait Mailer: Send + Sync {
    /// Sends one message.
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a>;
}

/// Picks the mailer from the configuration.
pub fn from_config(config: &MailConfig) -> Result<Arc<dyn Mailer>, MailError> {
    match (
        &config.mailgun_api_key,
        &config.mailgun_domain,
        &config.mail_sink_dir,
    ) {
        (Some(key), Some(domain), _) => Ok(Arc::new(Mailgun {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| MailError(e.to_string()))?,
            url: format!(
                "{}/v3/{domain}/messages",
                config.mailgun_api_base.trim_end_matches('/')
            ),
            key: key.clone(),
            from: config.mail_from.clone(),
        })),
        (_, _, Some(dir)) => Ok(Arc::new(DirSink::new(dir.clone()))),
        _ => Err(MailError(
            "set MAILGUN_API_KEY and MAILGUN_DOMAIN, or MAIL_SINK_DIR for local development".into(),
        )),
    }
}

/// Mailgun's HTTP API (`POST /v3/{domain}/messages`, basic auth `api:KEY`).
pub struct Mailgun {
    http: reqwest::Client,
    url: String,
    key: SecretString,
    from: String,
}

impl Mailer for Mailgun {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            let res = self
                .http
                .post(&self.url)
                .basic_auth("api", Some(self.key.expose_secret()))
                .form(&[
                    ("from", self.from.as_str()),
                    ("to", mail.to.as_str()),
                    ("subject", mail.subject.as_str()),
                    ("text", mail.text.as_str()),
                ])
                .send()
                .await
                .map_err(|e| MailError(e.without_url().to_string()))?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(MailError(format!("Mailgun answered {}", res.status())))
            }
        })
    }
}

/// Writes messages as JSON files (local development and tests).
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// A sink writing into `dir` (created when missing).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl Mailer for DirSink {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            tokio::fs::create_dir_all(&self.dir)
                .await
                .map_err(|e| MailError(e.to_string()))?;
            let name = format!(
                "{}-{}.json",
                chrono::Utc::now().timestamp_millis(),
                uuid::Uuid::new_v4().simple()
            );
            let body = serde_json::to_vec_pretty(mail).map_err(|e| MailError(e.to_string()))?;
            tokio::fs::write(self.dir.join(name), body)
                .await
                .map_err(|e| MailError(e.to_string()))
        })
    }
}

/// Every message in a sink directory, oldest first.
pub fn read_sink(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}
