//! Pub/Sub: publishing through the transactional outbox with the official client (mapped to the
//! emulator when `PUBSUB_EMULATOR_HOST` is set), and the push side: envelope decoding and the
//! verification of Google-signed OIDC tokens.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use serde_json::Value;
use tokio::sync::Mutex;

/// A decoded push delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// `messageId` (or `message_id`; real push sends both).
    pub message_id: String,
    /// `message.data`, base64-decoded exactly once.
    pub data: Vec<u8>,
    /// `message.attributes`, empty when absent.
    pub attributes: BTreeMap<String, String>,
    /// `publishTime` as sent.
    pub publish_time: Option<String>,
    /// `orderingKey`, if the topic uses ordering.
    pub ordering_key: Option<String>,
    /// Full subscription name.
    pub subscription: String,
    /// `deliveryAttempt`, sent only when the subscription has a dead-letter policy.
    pub delivery_attempt: Option<u32>,
}

/// Why a push body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    /// Not a push envelope: a legacy background-event or CloudEvent shape, or not JSON. 400:
    /// the sender is misconfigured; nothing is parsed out of it.
    #[error("not a Pub/Sub push envelope: {0}")]
    NotAnEnvelope(String),
    /// An envelope whose message cannot be read (bad base64). Acknowledged (204): it can never succeed.
    #[error("unreadable message: {0}")]
    Unreadable(String),
}

/// Decodes a push body: `{"message": {...}, "subscription": "..."}`.
///
/// Both id spellings (`messageId`/`message_id`) are read by name rather than as serde
/// aliases, since real push sends both and aliases reject that as a duplicate field.
pub fn parse_push(body: &[u8]) -> Result<PushMessage, PushError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| PushError::NotAnEnvelope(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| PushError::NotAnEnvelope("not a JSON object".into()))?;
    if obj.contains_key("context")
        || obj.contains_key("eventType")
        || obj.contains_key("specversion")
    {
        return Err(PushError::NotAnEnvelope(
            "a background-event or CloudEvent shape; only push subscriptions are accepted".into(),
        ));
    }
    let message = obj
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| PushError::NotAnEnvelope("no `message` object".into()))?;
    let subscription = obj
        .get("subscription")
        .and_then(Value::as_str)
        .ok_or_else(|| PushError::NotAnEnvelope("no `subscription`".into()))?
        .to_owned();
    let text = |a: &str, b: &str| {
        message
            .get(a)
            .or_else(|| message.get(b))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message_id = text("messageId", "message_id")
        .ok_or_else(|| PushError::NotAnEnvelope("no `messageId`".into()))?;
    let data = match message.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| PushError::Unreadable(format!("message.data is not base64: {e}")))?,
        Some(_) => return Err(PushError::Unreadable("message.data is not a string".into())),
    };
    let attributes = match message.get("attributes") {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    };
    let delivery_attempt = obj
        .get("deliveryAttempt")
        .or_else(|| obj.get("delivery_attempt"))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    Ok(PushMessage {
        message_id,
        data,
        attributes,
        publish_time: text("publishTime", "publish_time"),
        ordering_key: text("orderingKey", "ordering_key"),
        subscription,
        delivery_attempt,
    })
}

/// Publishes to topics of one project, one client per topic.
#[derive(Clone)]
pub struct Publishers {
    project: String,
    endpoint: Option<String>,
    clients: Arc<Mutex<HashMap<String, Publisher>>>,
}

/// A publishing failure; the outbox keeps the event and retries.
#[derive(Debug, thiserror::Error)]
#[error("publish to {topic}: {reason}")]
pub struct PublishError {
    /// Topic.
    pub topic: String,
    /// Cause.
    pub reason: String,
}

impl Publishers {
    /// `emulator_host` is `PUBSUB_EMULATOR_HOST` (`127.0.0.1:8085`); the official client reads
    /// no such variable, so it becomes an endpoint with anonymous credentials here.
    pub fn new(project: impl Into<String>, emulator_host: Option<String>) -> Self {
        Self {
            project: project.into(),
            endpoint: emulator_host.map(|h| {
                if h.starts_with("http") {
                    h
                } else {
                    format!("http://{h}")
                }
            }),
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Full topic name.
    pub fn topic_name(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    async fn client(&self, topic: &str) -> Result<Publisher, PublishError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(topic) {
            return Ok(c.clone());
        }
        let mut builder = Publisher::builder(self.topic_name(topic))
            .set_delay_threshold(Duration::from_millis(5));
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone()).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = builder.build().await.map_err(|e| PublishError {
            topic: topic.into(),
            reason: e.to_string(),
        })?;
        clients.insert(topic.to_owned(), client.clone());
        Ok(client)
    }

    /// Publishes one message; returns the server's message id.
    pub async fn publish(
        &self,
        topic: &str,
        data: Vec<u8>,
        attributes: &BTreeMap<String, String>,
        ordering_key: Option<&str>,
    ) -> Result<String, PublishError> {
        self.submit(topic, data, attributes, ordering_key)
            .await?
            .outcome(tokio::time::Instant::now() + PUBLISH_TIMEOUT)
            .await
    }

    /// Hands one message to the topic's client, which batches it with the messages submitted
    /// around it, and returns at once; [`Submitted::outcome`] waits for the server's answer.
    /// Messages with the same ordering key are published in the order they are submitted.
    pub async fn submit(
        &self,
        topic: &str,
        data: Vec<u8>,
        attributes: &BTreeMap<String, String>,
        ordering_key: Option<&str>,
    ) -> Result<Submitted, PublishError> {
        let client = self.client(topic).await?;
        let mut msg = Message::new()
            .set_data(data)
            .set_attributes(attributes.clone());
        if let Some(key) = ordering_key {
            msg = msg.set_ordering_key(key);
        }
        let answer = client.publish(msg);
        Ok(Submitted {
            topic: topic.to_owned(),
            ordering_key: ordering_key.map(str::to_owned),
            client,
            answer,
        })
    }
}

/// How long a publish may wait for the server's answer.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// A message handed to its topic's client, waiting for the server's answer.
pub struct Submitted {
    topic: String,
    ordering_key: Option<String>,
    client: Publisher,
    answer: google_cloud_pubsub::publisher::PublishFuture,
}

impl Submitted {
    /// The server's message id, or why not by `deadline`. A failure on an ordering key pauses
    /// that key in the client (later messages on it fail rather than overtake); the key is
    /// resumed here, so the outbox's next attempt publishes them again in order.
    pub async fn outcome(self, deadline: tokio::time::Instant) -> Result<String, PublishError> {
        let failed = |reason: String| PublishError {
            topic: self.topic.clone(),
            reason,
        };
        let result = match tokio::time::timeout_at(deadline, self.answer).await {
            Ok(Ok(id)) => return Ok(id),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed("timed out".into())),
        };
        if let Some(key) = &self.ordering_key {
            self.client.resume_publish(key.clone());
        }
        result
    }
}

#[cfg(feature = "db")]
pub use outbox::{OutboxRow, drain_once, enqueue, enqueue_audit, spawn_drainer};

#[cfg(feature = "db")]
mod outbox {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use sqlx::{PgConnection, PgPool, Row};
    use uuid::Uuid;

    use super::Publishers;
    use crate::events::{AuditRecorded, Event};

    /// An outbox row as bound into a statement: for a handler that writes its change and the
    /// event in one statement (a CTE) instead of calling [`enqueue`].
    #[derive(Debug, Clone)]
    pub struct OutboxRow {
        /// The event id (the envelope's `id`).
        pub event_id: Uuid,
        /// Topic the drainer publishes to.
        pub topic: &'static str,
        /// The envelope.
        pub payload: serde_json::Value,
    }

    impl OutboxRow {
        /// The row of `event` under a new event id; `occurred_at` is now, or the audit time of
        /// an `audit.recorded` event.
        pub fn of(event: &Event) -> Self {
            let event_id = Uuid::new_v4();
            let occurred_at = match event {
                Event::AuditRecorded(a) => a.at,
                _ => chrono::Utc::now(),
            };
            let envelope = event.to_envelope(event_id, occurred_at);
            Self {
                event_id,
                topic: event.topic(),
                payload: serde_json::to_value(&envelope).unwrap_or_default(),
            }
        }

        /// The row of an audit event.
        pub fn audit(audit: &AuditRecorded) -> Self {
            Self::of(&Event::AuditRecorded(audit.clone()))
        }
    }

    /// Writes an event into the outbox inside the caller's transaction.
    pub async fn enqueue(
        conn: &mut PgConnection,
        event: &Event,
        ordering_key: Option<String>,
    ) -> sqlx::Result<Uuid> {
        let row = OutboxRow::of(event);
        sqlx::query(
            "INSERT INTO outbox (event_id, topic, payload, ordering_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(row.event_id)
        .bind(row.topic)
        .bind(&row.payload)
        .bind(ordering_key)
        .execute(conn)
        .await?;
        Ok(row.event_id)
    }

    /// Writes an `audit.recorded` event into the outbox inside the caller's transaction (or on
    /// its own for a read), so the record of a change commits with the change. Returns the
    /// event id.
    pub async fn enqueue_audit<'e, E: sqlx::PgExecutor<'e>>(
        ex: E,
        audit: &AuditRecorded,
    ) -> sqlx::Result<Uuid> {
        let row = OutboxRow::audit(audit);
        sqlx::query("INSERT INTO outbox (event_id, topic, payload) VALUES ($1, $2, $3)")
            .bind(row.event_id)
            .bind(row.topic)
            .bind(&row.payload)
            .execute(ex)
            .await?;
        Ok(row.event_id)
    }

    /// Publishes what the outbox holds, oldest first; returns how many were published. Rows are
    /// locked with SKIP LOCKED so several instances drain side by side without doubles. A row
    /// that failed waits for its `retry_at` (1 s, doubling, at most 5 min), and a row waits
    /// while an older row of its ordering key waits.
    pub async fn drain_once(
        pool: &PgPool,
        publishers: &Publishers,
        batch: i64,
    ) -> sqlx::Result<usize> {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, event_id, topic, payload, ordering_key FROM outbox o \
             WHERE (retry_at IS NULL OR retry_at <= now()) \
               AND (ordering_key IS NULL OR NOT EXISTS \
                    (SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key AND e.id < o.id AND e.retry_at > now())) \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        // Every row is handed to its topic's client first (the client batches them), then the
        // answers are collected: a batch costs about one round trip to Pub/Sub, not one per
        // event, and a failing topic holds back only its own rows.
        let mut submitted = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let event_id: Uuid = row.try_get("event_id")?;
            let topic: String = row.try_get("topic")?;
            let payload: serde_json::Value = row.try_get("payload")?;
            let ordering_key: Option<String> = row.try_get("ordering_key")?;
            let kind = payload["type"].as_str().unwrap_or_default().to_owned();
            let attributes = BTreeMap::from([
                ("event_id".to_owned(), event_id.to_string()),
                ("type".to_owned(), kind),
            ]);
            let data = serde_json::to_vec(&payload).unwrap_or_default();
            let handed = publishers
                .submit(&topic, data, &attributes, ordering_key.as_deref())
                .await;
            submitted.push((id, event_id, handed));
        }
        let deadline = tokio::time::Instant::now() + super::PUBLISH_TIMEOUT;
        let mut published = Vec::with_capacity(submitted.len());
        for (id, event_id, handed) in submitted {
            let outcome = match handed {
                Ok(s) => s.outcome(deadline).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(message_id) => {
                    tracing::debug!(%event_id, %message_id, "event published");
                    published.push(id);
                }
                Err(e) => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                         retry_at = now() + least(interval '1 second' * power(2, least(attempts, 9)), interval '5 minutes') \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(e.to_string())
                    .execute(&mut *tx)
                    .await?;
                    tracing::warn!(%event_id, error = %e, "publish failed; kept in the outbox");
                }
            }
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(published.len())
    }

    /// Drains the outbox every `interval` (sooner after a full batch) until `stop` is set.
    pub fn spawn_drainer(
        pool: PgPool,
        publishers: Publishers,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = interval;
            loop {
                let wait = match drain_once(&pool, &publishers, 100).await {
                    Ok(100) => Duration::ZERO,
                    Ok(_) => {
                        backoff = interval;
                        interval
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox drain failed");
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        backoff
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {
                        // One last drain so a clean stop leaves nothing that could go now.
                        let _ = drain_once(&pool, &publishers, 1000).await;
                        return;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realdata(name: &str) -> Vec<u8> {
        let dir = std::env::var("REALDATA_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/realdata").into()
        });
        std::fs::read(format!("{dir}/gcp-pubsub/{name}")).unwrap()
    }

    #[test]
    fn the_real_push_body_without_attributes_is_decoded_once() {
        let m = parse_push(&realdata(
            "ffpython-issue170-real-push-body-no-attributes.json",
        ))
        .unwrap();
        assert_eq!(m.data, b"dasfdsafdasf");
        assert_eq!(m.message_id, "3390469820526936");
        assert!(m.attributes.is_empty());
        assert_eq!(m.ordering_key.as_deref(), Some("2"));
        assert_eq!(m.publish_time.as_deref(), Some("2021-11-16T19:21:09.107Z"));
        assert_eq!(
            m.subscription,
            "projects/example-project/subscriptions/message-ordering-subscription"
        );
        assert_eq!(m.delivery_attempt, None);
    }

    #[test]
    fn google_cloudevents_bodies_are_decoded() {
        let text = parse_push(&realdata(
            "google-cloudevents-MessagePublishedData-text.json",
        ))
        .unwrap();
        assert_eq!(text.data, b"test message 3");
        assert!(!text.attributes.is_empty());
        let bin = parse_push(&realdata(
            "google-cloudevents-MessagePublishedData-binary.json",
        ))
        .unwrap();
        assert_eq!(bin.data, vec![1, 2, 3, 4]);
        assert!(bin.attributes.is_empty());
        let dup = parse_push(&realdata(
            "google-cloudevents-MessagePublishedData-duplicatedFields.json",
        ))
        .unwrap();
        assert_eq!(
            (dup.message_id.as_str(), dup.data.as_slice()),
            ("message-id", &[1u8, 2, 3, 4][..])
        );
    }

    #[test]
    fn legacy_and_cloudevent_shapes_are_refused_not_misparsed() {
        for f in [
            "ffconformance-legacy_pubsub-legacy-input.json",
            "ffconformance-pubsub_text-legacy-input.json",
            "ffconformance-pubsub_text-cloudevent-input.json",
        ] {
            assert!(
                matches!(parse_push(&realdata(f)), Err(PushError::NotAnEnvelope(_))),
                "{f}"
            );
        }
    }

    #[test]
    fn bad_base64_is_unreadable_and_delivery_attempt_is_read() {
        let body = br#"{"subscription":"projects/p/subscriptions/s","deliveryAttempt":3,"message":{"messageId":"1","data":"@@@"}}"#;
        assert!(matches!(parse_push(body), Err(PushError::Unreadable(_))));
        let body = br#"{"subscription":"projects/p/subscriptions/s","deliveryAttempt":3,"message":{"message_id":"1","data":"aGk="}}"#;
        let m = parse_push(body).unwrap();
        assert_eq!(
            (m.delivery_attempt, m.data.as_slice(), m.message_id.as_str()),
            (Some(3), &b"hi"[..], "1")
        );
    }
}

/// The outbox drainer of a service: started next to the HTTP server, stopped after it.
#[cfg(feature = "db")]
pub struct Drainer {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "db")]
impl Drainer {
    /// Starts draining `pool`'s outbox to the configured project.
    pub fn start(pool: sqlx::PgPool, config: &crate::config::PubSubConfig) -> Self {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let publishers = Publishers::new(
            config.pubsub_project.clone(),
            config.pubsub_emulator_host.clone(),
        );
        let task = spawn_drainer(
            pool,
            publishers,
            Duration::from_millis(config.outbox_interval_ms),
            rx,
        );
        Self { stop, task }
    }

    /// Drains once more and stops, within [`Drainer::STOP_BUDGET`]. A last drain that does not
    /// finish in time (Pub/Sub slow or away) is cancelled: its transaction rolls back, the rows
    /// stay in the outbox for the next instance, and its connection goes back before the pool
    /// closes. Cloud Run allows 10 s from SIGTERM to SIGKILL, and the HTTP drain takes up to 8.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Self::STOP_BUDGET, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!(
                budget_ms = Self::STOP_BUDGET.as_millis() as u64,
                "last outbox drain cancelled; its events stay in the outbox"
            );
            self.task.abort();
            let _ = self.task.await;
        }
    }

    /// How long [`Drainer::stop`] waits for the last drain.
    pub const STOP_BUDGET: Duration = Duration::from_secs(1);
}

/// Google's signing keys for the OIDC tokens Pub/Sub push and Cloud Scheduler attach.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// Why a push request's token was refused (answered 401; Pub/Sub retries and dead-letters).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// Signature, issuer, audience, expiry or algorithm failed.
    #[error("token rejected: {0}")]
    Invalid(String),
    /// Signed by the right issuer for another identity.
    #[error("token is for another service account")]
    WrongAccount,
    /// The signing keys could not be fetched.
    #[error("signing keys unavailable: {0}")]
    Keys(String),
}

#[derive(serde::Deserialize)]
struct GoogleClaims {
    email: Option<String>,
    email_verified: Option<bool>,
}

/// Verifies Google-signed OIDC tokens: RS256 only, issuer `accounts.google.com`, the push
/// endpoint as audience, and the push subscription's service account as `email`.
pub struct OidcVerifier {
    audience: String,
    service_account: String,
    jwks_url: Option<String>,
    keys: tokio::sync::RwLock<Option<(std::time::Instant, jsonwebtoken::jwk::JwkSet)>>,
    http: reqwest::Client,
}

impl OidcVerifier {
    /// Keys fetched from Google (cached for an hour; refetched when a `kid` is unknown).
    pub fn google(audience: impl Into<String>, service_account: impl Into<String>) -> Self {
        Self::new(
            audience.into(),
            service_account.into(),
            Some(GOOGLE_JWKS_URL.to_owned()),
            None,
        )
    }

    /// Fixed keys (tests, or keys distributed another way).
    pub fn with_keys(
        audience: impl Into<String>,
        service_account: impl Into<String>,
        keys: jsonwebtoken::jwk::JwkSet,
    ) -> Self {
        Self::new(audience.into(), service_account.into(), None, Some(keys))
    }

    fn new(
        audience: String,
        service_account: String,
        jwks_url: Option<String>,
        keys: Option<jsonwebtoken::jwk::JwkSet>,
    ) -> Self {
        Self {
            audience,
            service_account,
            jwks_url,
            keys: tokio::sync::RwLock::new(keys.map(|k| (std::time::Instant::now(), k))),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn key_for(&self, kid: &str) -> Result<jsonwebtoken::DecodingKey, OidcError> {
        let fresh_enough = |at: &std::time::Instant| {
            self.jwks_url.is_none() || at.elapsed() < Duration::from_secs(3600)
        };
        if let Some((at, set)) = self.keys.read().await.as_ref()
            && let Some(jwk) = set.find(kid)
            && fresh_enough(at)
        {
            return jsonwebtoken::DecodingKey::from_jwk(jwk)
                .map_err(|e| OidcError::Invalid(e.to_string()));
        }
        let Some(url) = &self.jwks_url else {
            return Err(OidcError::Invalid("unknown key id".into()));
        };
        let set: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Keys(e.to_string()))?
            .json()
            .await
            .map_err(|e| OidcError::Keys(e.to_string()))?;
        let key = set.find(kid).map(jsonwebtoken::DecodingKey::from_jwk);
        *self.keys.write().await = Some((std::time::Instant::now(), set));
        match key {
            Some(Ok(k)) => Ok(k),
            Some(Err(e)) => Err(OidcError::Invalid(e.to_string())),
            None => Err(OidcError::Invalid("unknown key id".into())),
        }
    }

    /// The check of a push route: `None` (push auth off locally) lets every push in; a refused
    /// token is a 401, and signing keys that cannot be fetched a 503 so Pub/Sub redelivers. The
    /// reason is logged, never the token.
    pub async fn authorize_push(
        verifier: Option<&Self>,
        authorization: Option<&str>,
    ) -> Result<(), crate::error::Problem> {
        let Some(verifier) = verifier else {
            return Ok(());
        };
        verifier.verify(authorization).await.map_err(|e| {
            tracing::warn!(reason = %e, "push refused");
            if matches!(e, OidcError::Keys(_)) {
                crate::error::Problem::unavailable()
            } else {
                crate::error::Problem::unauthorized()
            }
        })
    }

    /// Checks an `Authorization` header value.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(), OidcError> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(OidcError::Missing)?
            .trim();
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(OidcError::Invalid("algorithm other than RS256".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| OidcError::Invalid("no key id".into()))?;
        let key = self.key_for(&kid).await?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.algorithms = vec![jsonwebtoken::Algorithm::RS256];
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&["https://accounts.google.com", "accounts.google.com"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<GoogleClaims>(token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        if data.claims.email.as_deref() != Some(self.service_account.as_str())
            || data.claims.email_verified != Some(true)
        {
            return Err(OidcError::WrongAccount);
        }
        Ok(())
    }
}

#[cfg(test)]
mod oidc_tests {
    use super::*;
    use std::process::Command;

    fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input).unwrap();
        child.wait_with_output().unwrap().stdout
    }

    /// A throw-away RSA key made with the openssl CLI, as (private key PKCS#1 DER, JWK set).
    fn keypair(kid: &str) -> (Vec<u8>, jsonwebtoken::jwk::JwkSet) {
        let pem = Command::new("openssl")
            .args(["genrsa", "2048"])
            .output()
            .expect("openssl")
            .stdout;
        let der = openssl(&["rsa", "-outform", "DER", "-traditional"], &pem);
        let mut child = Command::new("openssl")
            .args(["rsa", "-noout", "-modulus"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &pem).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let hex = out.trim().trim_start_matches("Modulus=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let set = serde_json::from_value(serde_json::json!({"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}]})).unwrap();
        (der, set)
    }

    fn token(pem: &[u8], kid: &str, aud: &str, email: &str, exp_in: i64) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"iss": "https://accounts.google.com", "aud": aud, "email": email, "email_verified": true, "sub": "1", "iat": now, "exp": now + exp_in});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(pem),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn only_a_google_signed_token_for_our_endpoint_and_account_passes() {
        let (pem, set) = keypair("k1");
        let (other_pem, _) = keypair("k1");
        let aud = "https://sleep-analysis.example/pubsub/push";
        let sa = "pubsub-push@dta-wide.iam.gserviceaccount.com";
        let v = OidcVerifier::with_keys(aud, sa, set);
        let ok = format!("Bearer {}", token(&pem, "k1", aud, sa, 300));
        assert_eq!(v.verify(Some(&ok)).await, Ok(()));
        assert_eq!(v.verify(None).await, Err(OidcError::Missing));
        for bad in [
            token(&pem, "k1", "https://other.example/push", sa, 300),
            token(&pem, "k1", aud, sa, -120),
            token(&other_pem, "k1", aud, sa, 300),
            token(&pem, "k2", aud, sa, 300),
        ] {
            assert!(
                matches!(
                    v.verify(Some(&format!("Bearer {bad}"))).await,
                    Err(OidcError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let other_account = format!(
            "Bearer {}",
            token(
                &pem,
                "k1",
                aud,
                "someone@example.iam.gserviceaccount.com",
                300
            )
        );
        assert_eq!(
            v.verify(Some(&other_account)).await,
            Err(OidcError::WrongAccount)
        );
        // HS256 signed with the public modulus as secret: refused by algorithm.
        let hs = jsonwebtoken::encode(&jsonwebtoken::Header { kid: Some("k1".into()), ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256) },
            &serde_json::json!({"iss": "https://accounts.google.com", "aud": aud, "email": sa, "email_verified": true, "exp": chrono::Utc::now().timestamp() + 300}),
            &jsonwebtoken::EncodingKey::from_secret(b"AQAB")).unwrap();
        assert!(matches!(
            v.verify(Some(&format!("Bearer {hs}"))).await,
            Err(OidcError::Invalid(_))
        ));
    }
}
