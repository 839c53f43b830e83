//! Throughput and memory of the streamed Apple Health import, on a generated export.
//!
//! `apple_import_bench generate <file> <MB>` writes an export of about that size: per day 288
//! heart-rate samples with metadata (Watch), 48 step counts (iPhone), active energy, and one
//! staged night of sleep records, i.e. mostly records the parser must skip, as in a real export.
//! `apple_import_bench parse <file>` streams it through `parse::apple_health` and prints MB/s
//! (10^6 bytes) and the peak resident set (VmHWM). scripts/bench-apple-import.sh runs both.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};

const WATCH_DEVICE: &str = "&lt;&lt;HKDevice: 0x283e0c0a0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:10.0&gt;&gt;";
const PHONE_DEVICE: &str = "&lt;&lt;HKDevice: 0x283e0c1e0&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone14,5, software:17.1&gt;&gt;";

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") if (4..=5).contains(&args.len()) => {
            let mb: u64 = args[3].parse().expect("size in MB");
            let sleep_nights = args.get(4).map(|n| n.parse().expect("a number of nights"));
            generate(&args[2], mb * 1_000_000, sleep_nights)
        }
        Some("parse") if args.len() == 3 => parse(&args[2]),
        _ => {
            eprintln!(
                "usage: apple_import_bench generate <file> <MB> [nights with sleep] | parse <file>"
            );
            std::process::exit(2);
        }
    }
}

/// One staged night, minutes from 22:50 the evening before: the phone's InBed, the watch's stages.
const NIGHT: &[(i64, i64, &str, &str)] = &[
    (0, 470, "InBed", "Owner's iPhone"),
    (15, 130, "AsleepCore", "Owner's Apple Watch"),
    (130, 175, "AsleepDeep", "Owner's Apple Watch"),
    (175, 220, "AsleepREM", "Owner's Apple Watch"),
    (220, 420, "AsleepCore", "Owner's Apple Watch"),
    (420, 430, "Awake", "Owner's Apple Watch"),
    (430, 465, "AsleepCore", "Owner's Apple Watch"),
];

fn ts(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S +0100").to_string()
}

fn generate(path: &str, target: u64, sleep_nights: Option<u64>) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut written: u64 = 0;
    put(
        &mut out,
        &mut written,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE HealthData [\n<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord)*)>\n<!ATTLIST HealthData\n  locale CDATA #REQUIRED\n>\n]>\n<HealthData locale=\"de_DE\">\n <ExportDate value=\"2026-12-01 09:00:00 +0100\"/>\n",
    )?;
    let mut day = NaiveDate::from_ymd_opt(2012, 1, 1).expect("a date");
    let mut line = String::with_capacity(1024);
    let mut nights: u64 = 0;
    while written < target {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
        line.clear();
        for i in 0..288i64 {
            let t = midnight + Duration::minutes(5 * i);
            let bpm = 52 + (i * 7 + day.ordinal0() as i64) % 60;
            line.push_str(&format!(
                " <Record type=\"HKQuantityTypeIdentifierHeartRate\" sourceName=\"Owner's Apple Watch\" sourceVersion=\"10.0\" device=\"{WATCH_DEVICE}\" unit=\"count/min\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{bpm}\">\n  <MetadataEntry key=\"HKMetadataKeyHeartRateMotionContext\" value=\"0\"/>\n </Record>\n",
                ts(t + Duration::seconds(40)),
                ts(t),
                ts(t)
            ));
            if i % 6 == 0 {
                line.push_str(&format!(
                    " <Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"Owner's iPhone\" sourceVersion=\"17.1\" device=\"{PHONE_DEVICE}\" unit=\"count\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{}\"/>\n",
                    ts(t + Duration::minutes(31)),
                    ts(t),
                    ts(t + Duration::minutes(30)),
                    (i * 13) % 900
                ));
            }
            if i % 12 == 0 {
                line.push_str(&format!(
                    " <Record type=\"HKQuantityTypeIdentifierActiveEnergyBurned\" sourceName=\"Owner's Apple Watch\" sourceVersion=\"10.0\" device=\"{WATCH_DEVICE}\" unit=\"kcal\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{}.{}\"/>\n",
                    ts(t + Duration::minutes(61)),
                    ts(t),
                    ts(t + Duration::minutes(60)),
                    i % 40,
                    i % 10
                ));
            }
        }
        let evening = midnight - Duration::minutes(70);
        let sleep = |from: i64, to: i64, value: &str, source: &str| {
            format!(
                " <Record type=\"HKCategoryTypeIdentifierSleepAnalysis\" sourceName=\"{source}\" sourceVersion=\"10.0\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"HKCategoryValueSleepAnalysis{value}\"/>\n",
                ts(evening + Duration::minutes(480)),
                ts(evening + Duration::minutes(from)),
                ts(evening + Duration::minutes(to))
            )
        };
        let with_sleep = sleep_nights.is_none_or(|n| nights < n);
        nights += 1;
        for (from, to, value, source) in if with_sleep { NIGHT } else { &[] } {
            line.push_str(&sleep(*from, *to, value, source));
        }
        put(&mut out, &mut written, &line)?;
        day = day.succ_opt().expect("a next day");
    }
    put(&mut out, &mut written, "</HealthData>\n")?;
    out.flush()?;
    eprintln!(
        "wrote {path}: {:.1} MB, days up to {day}",
        written as f64 / 1e6
    );
    Ok(())
}

fn put(out: &mut impl Write, written: &mut u64, s: &str) -> std::io::Result<()> {
    *written += s.len() as u64;
    out.write_all(s.as_bytes())
}

fn parse(path: &str) -> std::io::Result<()> {
    let bytes = std::fs::metadata(path)?.len();
    let reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let started = Instant::now();
    let sessions = log_ingestion::parse::apple_health(reader, chrono_tz::Europe::Berlin)
        .map_err(|e| std::io::Error::other(format!("{e} at {:?}", e.location)))?;
    let parse_secs = started.elapsed().as_secs_f64();
    let merged = Instant::now();
    let nights = log_ingestion::merge::nights(&sessions);
    let merge_secs = merged.elapsed().as_secs_f64();
    println!(
        "{:.1} MB in {:.2} s = {:.0} MB/s; {} sessions, {} nights (merge {:.3} s); peak RSS {}",
        bytes as f64 / 1e6,
        parse_secs,
        bytes as f64 / 1e6 / parse_secs,
        sessions.len(),
        nights.len(),
        merge_secs,
        peak_rss()
    );
    Ok(())
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
