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
    let creds = json!({"email": "demo@dta-wide.example", "password": "demo-password-2026"});
    let (status, body) = send(http.post(format!("{base}/v1/auth/register")).json(&creds)).await?;
    if status != 201 && status != 409 {
        return Err(format!("register answered {status}: {body}").into());
    }
    let (status, body) = send(http.post(format!("{base}/v1/auth/login")).json(&creds)).await?;
    if status != 200 {
        return Err(format!("login answered {status}: {body}").into());
    }
    let token = format!(
        "Bearer {}",
        body["access_token"].as_str().unwrap_or_default()
    );
    // Health data are stored only with the consent to the intended use (DiGAV §4(2) Nr. 1).
    let consent = json!({"purpose": "intended_use", "version": 1});
    let (status, body) = send(
        http.post(format!("{base}/v1/me/consents"))
            .header("authorization", &token)
            .json(&consent),
    )
    .await?;
    if status != 201 && status != 200 {
        return Err(format!("consent answered {status}: {body}").into());
    }

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
                    "  {file:<62} {status} {} periods, {} new",
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
