//! The demo the README runs: a demo user's diary nights and the sample wearable files, imported
//! through the local entry point exactly as the app would, then the resulting nights printed.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde_json::{Value, json};

/// Demo arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Base URL of the local entry point.
    #[arg(long, env = "DEMO_BASE_URL", default_value = "http://127.0.0.1:8080")]
    pub base: String,
    /// Folder with the real sample files (apple-health/, fitbit/, oura/).
    #[arg(long, env = "REALDATA_DIR")]
    pub realdata: PathBuf,
    /// The user's IANA zone.
    #[arg(long, default_value = "Europe/Berlin")]
    pub zone: String,
    /// Where the local auth service drops its mail (the verification link).
    #[arg(long, env = "MAIL_SINK_DIR")]
    pub mail_dir: PathBuf,
    /// Where the demo keeps the demo user's TOTP secret between runs.
    #[arg(long, env = "DEMO_STATE_DIR", default_value = "target/local")]
    pub state_dir: PathBuf,
    /// The local database, read only to tell when the event chain has caught up (the demo
    /// user's events left in the outbox, the analysis state); without it the demo waits for
    /// the sleep window to stop changing.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// How long to wait for the event chain before printing what is there, seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

const DEMO_EMAIL: &str = "demo@dta-wide.example";
const DEMO_PASSWORD: &str = "sleep-well-2026-locally";

/// The verification token from the newest verification mail to the demo address.
fn verification_token(mail_dir: &Path) -> DemoResult<String> {
    let mut files: Vec<_> = std::fs::read_dir(mail_dir)
        .map_err(|e| format!("cannot read the mail sink {}: {e}", mail_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files.iter().rev() {
        let mail: Value = serde_json::from_slice(&std::fs::read(f)?)?;
        let token = mail["text"]
            .as_str()
            .and_then(|t| t.split("Token: ").nth(1));
        if mail["to"] == DEMO_EMAIL && mail["kind"] == "verify_email" && token.is_some() {
            return Ok(token.unwrap_or_default().trim().to_owned());
        }
    }
    Err("no verification mail for the demo user in the mail sink".into())
}

/// The current TOTP code (RFC 6238: SHA-1, 6 digits, 30 s) for a base32 secret.
fn totp_now(secret: &str) -> DemoResult<String> {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|e| format!("TOTP secret: {e:?}"))?;
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        "demo".to_owned(),
    )
    .map_err(|e| format!("TOTP: {e}"))?;
    Ok(totp.generate_current()?)
}

/// Registers (once), confirms the address, passes both factors and grants the consent to the
/// intended use: the path a new patient takes in the app.
async fn sign_in(http: &reqwest::Client, base: &str, args: &DemoArgs) -> DemoResult<String> {
    let creds = json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD});
    let (status, body) = send(http.post(format!("{base}/v1/auth/register")).json(&creds)).await?;
    if status != 202 {
        return Err(format!("register answered {status}: {body}").into());
    }
    let mut login = send(http.post(format!("{base}/v1/auth/login")).json(&creds)).await?;
    if login.0 == 403 && login.1["code"] == "email_not_verified" {
        let token = verification_token(&args.mail_dir)?;
        let (status, body) = send(
            http.post(format!("{base}/v1/auth/email-verification"))
                .json(&json!({"token": token})),
        )
        .await?;
        if status != 204 {
            return Err(format!("e-mail verification answered {status}: {body}").into());
        }
        login = send(http.post(format!("{base}/v1/auth/login")).json(&creds)).await?;
    }
    let (status, challenge) = login;
    if status != 200 {
        return Err(format!("login answered {status}: {challenge}").into());
    }
    let mfa = challenge["mfa_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secret_file = args.state_dir.join("demo-totp-secret");
    let secret = if challenge["second_factor"] == "totp_enrolment" {
        let (status, body) = send(
            http.post(format!("{base}/v1/auth/login/totp-enrolment"))
                .json(&json!({"mfa_token": mfa})),
        )
        .await?;
        if status != 200 {
            return Err(format!("TOTP enrolment answered {status}: {body}").into());
        }
        let secret = body["secret"].as_str().unwrap_or_default().to_owned();
        std::fs::create_dir_all(&args.state_dir)?;
        std::fs::write(&secret_file, &secret)?;
        secret
    } else {
        std::fs::read_to_string(&secret_file).map_err(
            |_| "the demo user has a TOTP secret this machine no longer has; run with --fresh",
        )?
    };
    let second_factor = || async {
        send(
            http.post(format!("{base}/v1/auth/login/second-factor"))
                .json(&json!({"mfa_token": mfa, "code": totp_now(secret.trim())?})),
        )
        .await
    };
    let (mut status, mut tokens) = second_factor().await?;
    if status == 401 {
        // Each 30 s step's code is accepted once (replay protection): a run within 30 s of
        // the last one sends a used code. The challenge allows further attempts, so wait for
        // the next step and send its code.
        let now = chrono::Utc::now().timestamp();
        let wait = 30 - now.rem_euclid(30) + 1;
        println!(
            "this 30 s step's TOTP code was used by the last run; waiting {wait} s for the next"
        );
        tokio::time::sleep(std::time::Duration::from_secs(wait as u64)).await;
        (status, tokens) = second_factor().await?;
    }
    if status != 200 {
        return Err(format!("second factor answered {status}: {tokens}").into());
    }
    let token = format!(
        "Bearer {}",
        tokens["access_token"].as_str().unwrap_or_default()
    );
    let (status, consents) = send(
        http.get(format!("{base}/v1/me/consents"))
            .header("authorization", &token),
    )
    .await?;
    if status != 200 {
        return Err(format!("consents answered {status}: {consents}").into());
    }
    for c in consents
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["purpose"] == "intended_use")
    {
        let grant = json!({"purpose": "intended_use", "version": c["current_version"]});
        let (status, body) = send(
            http.post(format!("{base}/v1/me/consents"))
                .header("authorization", &token)
                .json(&grant),
        )
        .await?;
        if status != 200 && status != 201 {
            return Err(format!("consent answered {status}: {body}").into());
        }
    }
    println!(
        "signed in as {DEMO_EMAIL} (password, TOTP second factor) and consented to the intended use"
    );
    Ok(token)
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The files imported, as (source path segment, file).
pub const FILES: &[(&str, &str)] = &[
    ("apple-health", "apple-health/resilio-sleep_with_inbed.xml"),
    ("apple-health", "apple-health/resilio-sleep_ios15.xml"),
    ("apple-health", "apple-health/resilio-sleep_ios16.xml"),
    (
        "apple-health",
        "apple-health/hydawo-export-v14-multisource-midnight-dst.xml",
    ),
    (
        "apple-health",
        "apple-health/grll-export-autosleep-multisource.xml",
    ),
    (
        "apple-health",
        "apple-health/resilio-truncated-INVALID-on-purpose.xml",
    ),
    (
        "fitbit",
        "fitbit/shimmer-fitbit-sleep-date-classic-with-nap.json",
    ),
    (
        "fitbit",
        "fitbit/sleepcare-fitbit-sleep-list-v1.2-stages.json",
    ),
    (
        "oura",
        "oura/exoura-v2-usercollection-sleep-slice-naps-rest-dst.json",
    ),
];

async fn send(req: reqwest::RequestBuilder) -> DemoResult<(u16, Value)> {
    let res = req.send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Runs the demo and prints the nights.
pub async fn run(args: DemoArgs) -> DemoResult<()> {
    let http = reqwest::Client::new();
    let base = args.base.trim_end_matches('/');
    let token = sign_in(&http, base, &args).await?;

    // A baseline week of diary nights ending on the spring DST night (REFERENCE §2.5 N2) and the
    // autumn DST night (N3); fixed ids make reruns idempotent.
    let mut diary: Vec<(String, String, String, String, String, u32)> = (24..=29)
        .map(|d| {
            let (t1, t6) = (
                format!("2025-03-{:02}T23:00:00+01:00", d - 1),
                format!("2025-03-{d:02}T06:30:00+01:00"),
            );
            (
                format!("00000000-0000-4000-8000-0000000d{d:04}"),
                t1,
                format!("2025-03-{:02}T23:15:00+01:00", d - 1),
                t6,
                format!("2025-03-{d:02}T07:00:00+01:00"),
                if d % 2 == 0 { 40 } else { 20 },
            )
        })
        .collect();
    diary.push((
        "00000000-0000-4000-8000-00000000d001".into(),
        "2025-03-29T23:00:00+01:00".into(),
        "2025-03-29T23:15:00+01:00".into(),
        "2025-03-30T06:30:00+02:00".into(),
        "2025-03-30T07:00:00+02:00".into(),
        20,
    ));
    diary.push((
        "00000000-0000-4000-8000-00000000d002".into(),
        "2025-10-25T23:00:00+02:00".into(),
        "2025-10-25T23:15:00+02:00".into(),
        "2025-10-26T06:30:00+01:00".into(),
        "2025-10-26T07:00:00+01:00".into(),
        20,
    ));
    let mut rows: Vec<[String; 6]> = Vec::new();
    for (id, t1, t2, t6, t7, sol) in diary {
        let entry = json!({"id": id, "zone": args.zone, "into_bed": t1, "lights_out": t2, "sol_min": sol,
            "awakenings": 1, "waso_min": 15, "final_awakening": t6, "out_of_bed": t7, "quality": 3});
        let (status, body) = send(
            http.post(format!("{base}/v1/sleep-logs"))
                .header("authorization", &token)
                .json(&entry),
        )
        .await?;
        if status != 201 && status != 200 {
            return Err(format!("diary entry answered {status}: {body}").into());
        }
        let m = &body["metrics"];
        rows.push([
            body["night"].as_str().unwrap_or_default().to_owned(),
            "diary".into(),
            m["tib_min"].to_string(),
            m["tst_min"].to_string(),
            format!("{:.1}", m["se_pct"].as_f64().unwrap_or_default()),
            m["nap_min"].to_string(),
        ]);
    }

    println!("imports:");
    let mut dates: Vec<String> = Vec::new();
    for (source, file) in FILES {
        let path = args.realdata.join(file);
        let bytes = read(&path)?;
        let url = format!("{base}/v1/imports/{source}?zone={}", args.zone);
        let (status, body) = send(
            http.post(url)
                .header("authorization", &token)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
        .await?;
        match status {
            200 | 201 => {
                let nights: Vec<String> = body["nights"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect();
                println!(
                    "  {file:<62} {status} {} period(s), {} new",
                    body["sessions_in_file"], body["sessions_new"]
                );
                dates.extend(nights);
            }
            _ => println!(
                "  {file:<62} {status} rejected: {}",
                body["detail"].as_str().unwrap_or_default()
            ),
        }
    }
    dates.sort();
    dates.dedup();
    for window in windows(&dates) {
        let url = format!("{base}/v1/imports/nights?from={}&to={}", window.0, window.1);
        let (status, nights) = send(http.get(url).header("authorization", &token)).await?;
        if status != 200 {
            return Err(format!("nights answered {status}: {nights}").into());
        }
        for n in nights.as_array().into_iter().flatten() {
            let sources: Vec<String> = n["provenance"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["device"].as_str() {
                    Some(d) => format!("{}:{d}", p["source"].as_str().unwrap_or_default()),
                    None => p["source"].as_str().unwrap_or_default().to_owned(),
                })
                .collect();
            let naps: Vec<String> = n["naps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["asleep_min"].to_string())
                .collect();
            let main = &n["main"];
            rows.push([
                n["date"].as_str().unwrap_or_default().to_owned(),
                sources.join("+"),
                if main.is_null() {
                    "-".into()
                } else {
                    main["tib_min"].to_string()
                },
                if main.is_null() {
                    "-".into()
                } else {
                    main["tst_min"].to_string()
                },
                if main.is_null() {
                    "-".into()
                } else {
                    format!("{:.1}", main["se_pct"].as_f64().unwrap_or_default())
                },
                if naps.is_empty() {
                    "-".into()
                } else {
                    naps.join(",")
                },
            ]);
        }
    }
    rows.sort();
    println!();
    println!(
        "{:<11} {:<44} {:>5} {:>5} {:>6}  naps (min asleep)",
        "night", "source", "TIB", "TST", "SE%"
    );
    for r in rows {
        println!(
            "{:<11} {:<44} {:>5} {:>5} {:>6}  {}",
            r[0],
            truncate(&r[1], 44),
            r[2],
            r[3],
            r[4],
            r[5]
        );
    }
    print_sleep_window(&http, base, &token, &args).await
}

/// The subject of an access token (its `sub` claim), read without verifying it: the demo only
/// needs to know which user's events to wait for.
fn token_subject(bearer: &str) -> Option<uuid::Uuid> {
    use base64::Engine as _;
    let jwt = bearer.strip_prefix("Bearer ")?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(1)?)
        .ok()?;
    serde_json::from_slice::<Value>(&claims).ok()?["sub"]
        .as_str()?
        .parse()
        .ok()
}

/// What the event chain has done for the user so far: sleep-log events still in the outbox, and
/// the analysis state (analysed nights, prescribed weeks and their newest change).
async fn chain_state(pool: &sqlx::PgPool, user: uuid::Uuid) -> Result<(i64, String), sqlx::Error> {
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE topic = 'sleep-log' AND payload->'data'->>'user_id' = $1",
    )
    .bind(user.to_string())
    .fetch_one(pool)
    .await?;
    let state: String = sqlx::query_scalar(
        "SELECT concat_ws('/', (SELECT count(*) FROM analysis_nights WHERE user_id = $1), \
           (SELECT max(revision)::text FROM analysis_nights WHERE user_id = $1), \
           (SELECT count(*) FROM sleep_windows WHERE user_id = $1), \
           (SELECT max(updated_at)::text FROM sleep_windows WHERE user_id = $1))",
    )
    .bind(user)
    .fetch_one(pool)
    .await?;
    Ok((pending, state))
}

/// Waits for the event chain (outbox → Pub/Sub → sleep-analysis) to catch up with every diary
/// entry and import above, then prints the prescription. Caught up means: none of the demo
/// user's sleep-log events is left in the outbox, and the analysis state and the served window
/// did not change over the last polls (each import's event changes the week; the first one to
/// arrive is not the settled answer).
async fn print_sleep_window(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    args: &DemoArgs,
) -> DemoResult<()> {
    /// Consecutive equal polls, POLL apart, that count as settled.
    const SETTLED_POLLS: u32 = 3;
    const POLL: std::time::Duration = std::time::Duration::from_millis(250);
    println!();
    let user = token_subject(token);
    let pool = match (&args.database_url, user) {
        (Some(url), Some(_)) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(|e| format!("cannot reach the local database: {e}"))?,
        ),
        _ => None,
    };
    let started = std::time::Instant::now();
    let deadline = std::time::Duration::from_secs(args.wait_secs);
    let mut last = (0u16, Value::Null);
    let mut previous: Option<(String, Value)> = None;
    let mut equal = 0;
    let mut settled = false;
    let mut pending = 0;
    while started.elapsed() < deadline {
        let state = match (&pool, user) {
            (Some(pool), Some(user)) => {
                let (left, state) = chain_state(pool, user).await?;
                pending = left;
                state
            }
            _ => String::new(),
        };
        last = send(
            http.get(format!("{base}/v1/sleep-window"))
                .header("authorization", token),
        )
        .await?;
        let snapshot = (state, last.1.clone());
        if pending == 0 && last.0 == 200 && previous.as_ref() == Some(&snapshot) {
            equal += 1;
            if equal >= SETTLED_POLLS {
                settled = true;
                break;
            }
        } else {
            equal = 0;
        }
        previous = Some(snapshot);
        tokio::time::sleep(POLL).await;
    }
    if !settled {
        println!(
            "the event chain did not settle within {} s ({pending} sleep-log event(s) still in the outbox); \
             the window below may not include every night yet (see target/local/sleep-analysis.log)",
            args.wait_secs
        );
    }
    let (status, _) = &last;
    if *status != 200 {
        println!("sleep window not available yet ({status}): {}", last.1);
        return Ok(());
    }
    let week = |w: &Value| {
        format!(
            "week of {}: {} night(s), SE {} % → {} ({}){}",
            w["week_start"].as_str().unwrap_or_default(),
            w["nights"],
            w["se_pct"],
            w["change"].as_str().unwrap_or_default(),
            w["reason"].as_str().unwrap_or_default(),
            match w["window_min"].as_i64() {
                Some(m) => format!(
                    ", window {m} min, bed {} → wake {}",
                    w["bedtime"].as_str().unwrap_or("-"),
                    w["wake_time"].as_str().unwrap_or("-")
                ),
                None => String::new(),
            }
        )
    };
    println!(
        "sleep window now [{}]: {}",
        last.1["params_version"].as_str().unwrap_or_default(),
        week(&last.1)
    );
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

fn read(path: &Path) -> DemoResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// Consecutive date windows of at most 366 nights covering the dates (the API's range limit).
fn windows(dates: &[String]) -> Vec<(String, String)> {
    let mut parsed: Vec<NaiveDate> = dates.iter().filter_map(|d| d.parse().ok()).collect();
    parsed.sort();
    let mut out = Vec::new();
    let mut i = 0;
    while i < parsed.len() {
        let start = parsed[i];
        let mut j = i;
        while j + 1 < parsed.len() && (parsed[j + 1] - start).num_days() < 366 {
            j += 1;
        }
        out.push((start.to_string(), parsed[j].to_string()));
        i = j + 1;
    }
    out
}
