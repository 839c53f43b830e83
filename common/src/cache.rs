//! Redis: the connection manager, sessions and rate-limit counters (Memorystore in production).
//!
//! Every key starts with `REDIS_KEY_PREFIX`, and every key is written together with its expiry
//! inside one Lua script (scripts run atomically), so no key ever lives without a TTL. Some
//! scripts touch several keys: this needs one Redis primary (Memorystore Standard tier), not
//! Redis Cluster. Times inside the scripts come from the Redis server clock (`TIME`), so all
//! instances agree on idle and absolute deadlines.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use rand::RngCore as _;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Redis connection.
#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis URL (Memorystore: `redis://10.x.y.z:6379`, `rediss://` with in-transit encryption).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: SecretString,
    /// Prefix of every key, so environments (and tests) sharing one Redis never collide.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "dta")]
    pub redis_key_prefix: String,
    /// Connect and response timeout in milliseconds; beyond it the request fails closed (503).
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub redis_timeout_ms: u64,
}

/// Session lifetimes, enforced in Redis (TR-03161-3 O.Auth_10, O.Auth_11).
#[derive(Debug, Clone, Copy, Args)]
pub struct SessionConfig {
    /// Seconds without an authenticated request (data route or refresh) after which the
    /// session ends and the user logs in again.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SECS", default_value_t = 30 * 60)]
    pub session_idle_timeout_secs: u64,
    /// Seconds after login after which the session ends however active it is.
    #[arg(long, env = "SESSION_ABSOLUTE_TIMEOUT_SECS", default_value_t = 12 * 60 * 60)]
    pub session_absolute_timeout_secs: u64,
}

impl SessionConfig {
    /// Idle timeout.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_timeout_secs)
    }
    /// Absolute lifetime.
    pub fn absolute(&self) -> Duration {
        Duration::from_secs(self.session_absolute_timeout_secs)
    }
}

/// Why Redis could not answer. Callers fail closed (503).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// REDIS_URL cannot be parsed; the URL is not repeated (it may hold a password).
    #[error("REDIS_URL is not a valid Redis URL")]
    Url,
    /// The command failed or timed out.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A script answered something it never answers.
    #[error("unexpected answer from a Redis script")]
    Protocol,
}

/// Result of a Redis operation.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// A shared, reconnecting connection plus the key prefix.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// A lazily connecting manager: the service starts while Redis is down and answers 503
    /// until it is back, instead of crash-looping.
    pub fn connect(config: &RedisConfig) -> Result<Self> {
        use redis::IntoConnectionInfo as _;
        let info = config
            .redis_url
            .expose_secret()
            .into_connection_info()
            .map_err(|_| CacheError::Url)?;
        // Every request sends one small command and waits for its answer: Nagle's algorithm
        // would hold a command back behind another's unacknowledged one.
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client =
            redis::Client::open(info.set_tcp_settings(tcp)).map_err(|_| CacheError::Url)?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            conn,
            prefix: Arc::from(config.redis_key_prefix.as_str()),
        })
    }

    /// `PREFIX:a:b`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = String::with_capacity(64);
        key.push_str(&self.prefix);
        for p in parts {
            key.push(':');
            key.push_str(p);
        }
        key
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle on the shared connection (cheap to clone).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

/// A random token from the operating system's CSPRNG (via `rand`'s ThreadRng, a ChaCha
/// generator seeded and reseeded from it; TR-03161-3 O.Rand_1, O.Auth_15), base64url.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a high-entropy token, hex; what is stored instead of the token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Lua shared by the scripts: the server clock and the fixed-window counter whose expiry is
/// set in the same atomic step as the increment.
pub const LUA_PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function hit(key, limit, window)
  local n = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  if n > limit then return ttl end
  return 0
end
local function touch(key, user, idle)
  local v = redis.call('HMGET', key, 'u', 'abs')
  if not v[1] or v[1] ~= user then return 0 end
  local left = tonumber(v[2]) - now_ms()
  if left <= 0 then
    redis.call('DEL', key)
    return 0
  end
  if left < idle then idle = left end
  redis.call('PEXPIRE', key, idle)
  return 1
end
"#;

/// One rate-limit counter: at most `limit` hits per fixed `window`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Full key (use [`Redis::key`]).
    pub key: String,
    /// Hits allowed per window.
    pub limit: u32,
    /// Window length.
    pub window: Duration,
}

/// Fixed-window rate limits shared by every instance.
#[derive(Clone)]
pub struct Limiter {
    redis: Redis,
    script: Arc<Script>,
}

impl Limiter {
    /// A limiter on this connection.
    pub fn new(redis: Redis) -> Self {
        let script = Script::new(&format!(
            "{LUA_PRELUDE}
local retry = 0
for i, key in ipairs(KEYS) do
  local r = hit(key, tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]))
  if r > retry then retry = r end
end
return retry"
        ));
        Self {
            redis,
            script: Arc::new(script),
        }
    }

    /// Counts one hit on every rule; `Some(retry_after)` when any of them is over its limit.
    /// Every counter is incremented, so blocked attempts keep an attacker blocked.
    pub async fn hit(&self, rules: &[Rule]) -> Result<Option<Duration>> {
        let mut inv = self.script.prepare_invoke();
        for r in rules {
            inv.key(&r.key)
                .arg(r.limit)
                .arg(r.window.as_millis() as u64);
        }
        let retry_ms: i64 = inv.invoke_async(&mut self.redis.conn()).await?;
        Ok((retry_ms > 0).then(|| Duration::from_millis(retry_ms as u64)))
    }
}

/// `Retry-After` seconds for a wait, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// A new session: its id goes into the access token, the refresh token to the client only.
#[derive(Clone)]
pub struct NewSession {
    /// Session id (`sid` claim); 128 bits from the CSPRNG.
    pub id: String,
    /// Opaque refresh token; 256 bits from the CSPRNG; only its SHA-256 is stored.
    pub refresh_token: String,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSession { .. }")
    }
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Refreshed {
    /// The token was current: a new one replaces it in the same session.
    Rotated {
        /// The session's user.
        user: Uuid,
        /// The session (family) id.
        session: NewSession,
    },
    /// The token had already been rotated away: the whole family (session) is revoked.
    Reused {
        /// The session's user.
        user: Uuid,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// A live session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// Login time, ms since the epoch.
    pub created_ms: i64,
    /// Absolute end, ms since the epoch.
    pub expires_ms: i64,
}

/// Sessions and refresh-token families in Redis.
///
/// Keys: `sess:{sid}` hash (`u` user, `abs` absolute deadline ms, `rt` hash of the current
/// refresh token, `c` created ms) with TTL = min(idle, absolute left); `rt:{sha256}` → sid with
/// TTL = absolute left, kept after rotation so a replayed token is recognised as reuse;
/// `us:{user}` set of the user's sids with TTL = absolute lifetime, for "log out everywhere".
#[derive(Clone)]
pub struct Sessions {
    redis: Redis,
    config: SessionConfig,
    scripts: Arc<SessionScripts>,
}

struct SessionScripts {
    create: Script,
    touch: Script,
    rotate: Script,
    revoke: Script,
    revoke_all: Script,
}

impl Sessions {
    /// Sessions on this connection with these lifetimes.
    pub fn new(redis: Redis, config: SessionConfig) -> Self {
        let script = |body: &str| Script::new(&format!("{LUA_PRELUDE}\n{body}"));
        let scripts = SessionScripts {
            // KEYS: sess, rt, us; ARGV: user, idle ms, absolute ms, rt hash, sid
            create: script(
                r#"
local now = now_ms()
local abs = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'abs', now + abs, 'rt', ARGV[4], 'c', now)
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[2]), abs))
redis.call('SET', KEYS[2], ARGV[5], 'PX', abs)
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('PEXPIRE', KEYS[3], abs)
return 1"#,
            ),
            // KEYS: sess; ARGV: user, idle ms
            touch: script("return touch(KEYS[1], ARGV[1], tonumber(ARGV[2]))"),
            // KEYS: sess, new rt; ARGV: presented hash, new hash, idle ms, sid
            rotate: script(
                r#"
local v = redis.call('HMGET', KEYS[1], 'u', 'abs', 'rt')
if not v[1] then return {0, ''} end
if v[3] ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {-1, v[1]}
end
local left = tonumber(v[2]) - now_ms()
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return {0, ''}
end
redis.call('HSET', KEYS[1], 'rt', ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[3]), left))
redis.call('SET', KEYS[2], ARGV[4], 'PX', left)
return {1, v[1]}"#,
            ),
            // KEYS: sess, us; ARGV: user, sid
            revoke: script(
                r#"
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1"#,
            ),
            // KEYS: us; ARGV: session key prefix, sid to keep ('' for none)
            revoke_all: script(
                r#"
local n = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if sid ~= ARGV[2] then
    n = n + redis.call('DEL', ARGV[1] .. sid)
    redis.call('SREM', KEYS[1], sid)
  end
end
return n"#,
            ),
        };
        Self {
            redis,
            config,
            scripts: Arc::new(scripts),
        }
    }

    /// The lifetimes.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Redis key of a session.
    pub fn session_key(&self, sid: &str) -> String {
        self.redis.key(&["sess", sid])
    }

    fn user_key(&self, user: Uuid) -> String {
        self.redis.key(&["us", &user.to_string()])
    }

    fn refresh_key(&self, hash: &str) -> String {
        self.redis.key(&["rt", hash])
    }

    /// Starts a session for `user` (after both factors).
    pub async fn create(&self, user: Uuid) -> Result<NewSession> {
        let session = NewSession {
            id: random_token(16),
            refresh_token: random_token(32),
        };
        let hash = token_hash(&session.refresh_token);
        let _: i64 = self
            .scripts
            .create
            .key(self.session_key(&session.id))
            .key(self.refresh_key(&hash))
            .key(self.user_key(user))
            .arg(user.to_string())
            .arg(self.config.idle().as_millis() as u64)
            .arg(self.config.absolute().as_millis() as u64)
            .arg(&hash)
            .arg(&session.id)
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(session)
    }

    /// Whether `sid` is a live session of `user`; counts as activity (restarts the idle timer).
    pub async fn touch(&self, sid: &str, user: Uuid) -> Result<bool> {
        let live: i64 = self
            .scripts
            .touch
            .key(self.session_key(sid))
            .arg(user.to_string())
            .arg(self.config.idle().as_millis() as u64)
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(live == 1)
    }

    /// Rotates a refresh token; a token that was already rotated revokes its family.
    pub async fn refresh(&self, token: &str) -> Result<Refreshed> {
        let presented = token_hash(token);
        let sid: Option<String> = redis::cmd("GET")
            .arg(self.refresh_key(&presented))
            .query_async(&mut self.redis.conn())
            .await?;
        let Some(sid) = sid else {
            return Ok(Refreshed::Invalid);
        };
        let next = random_token(32);
        let next_hash = token_hash(&next);
        let (status, user): (i64, String) = self
            .scripts
            .rotate
            .key(self.session_key(&sid))
            .key(self.refresh_key(&next_hash))
            .arg(&presented)
            .arg(&next_hash)
            .arg(self.config.idle().as_millis() as u64)
            .arg(&sid)
            .invoke_async(&mut self.redis.conn())
            .await?;
        let user = || Uuid::parse_str(&user).map_err(|_| CacheError::Protocol);
        Ok(match status {
            1 => Refreshed::Rotated {
                user: user()?,
                session: NewSession {
                    id: sid,
                    refresh_token: next,
                },
            },
            -1 => Refreshed::Reused { user: user()? },
            _ => Refreshed::Invalid,
        })
    }

    /// The user a refresh token belongs to, without using it (for per-account rate limits).
    pub async fn refresh_owner(&self, token: &str) -> Result<Option<Uuid>> {
        let mut conn = self.redis.conn();
        let sid: Option<String> = redis::cmd("GET")
            .arg(self.refresh_key(&token_hash(token)))
            .query_async(&mut conn)
            .await?;
        let Some(sid) = sid else { return Ok(None) };
        let user: Option<String> = redis::cmd("HGET")
            .arg(self.session_key(&sid))
            .arg("u")
            .query_async(&mut conn)
            .await?;
        Ok(user.and_then(|u| Uuid::parse_str(&u).ok()))
    }

    /// Ends one session of `user`; false when it is not (or no longer) theirs.
    pub async fn revoke(&self, sid: &str, user: Uuid) -> Result<bool> {
        let n: i64 = self
            .scripts
            .revoke
            .key(self.session_key(sid))
            .key(self.user_key(user))
            .arg(user.to_string())
            .arg(sid)
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(n == 1)
    }

    /// Ends every session of `user` except `keep`; answers how many were live.
    pub async fn revoke_all(&self, user: Uuid, keep: Option<&str>) -> Result<u64> {
        let n: u64 = self
            .scripts
            .revoke_all
            .key(self.user_key(user))
            .arg(self.redis.key(&["sess", ""]))
            .arg(keep.unwrap_or(""))
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(n)
    }

    /// The user's live sessions, oldest first.
    pub async fn list(&self, user: Uuid) -> Result<Vec<SessionInfo>> {
        let mut conn = self.redis.conn();
        let sids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.user_key(user))
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        for sid in sids {
            let (u, c, abs): (Option<String>, Option<i64>, Option<i64>) = redis::cmd("HMGET")
                .arg(self.session_key(&sid))
                .arg("u")
                .arg("c")
                .arg("abs")
                .query_async(&mut conn)
                .await?;
            if let (Some(u), Some(c), Some(abs)) = (u, c, abs)
                && u == user.to_string()
            {
                out.push(SessionInfo {
                    id: sid,
                    created_ms: c,
                    expires_ms: abs,
                });
            }
        }
        out.sort_by_key(|s| s.created_ms);
        Ok(out)
    }
}
