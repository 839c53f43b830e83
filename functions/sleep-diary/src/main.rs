use std::process::ExitCode;

use clap::Parser;
use sleep_diary::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    common::telemetry::init(&config.platform);
    match sleep_diary::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sleep-diary stopped");
            ExitCode::FAILURE
        }
    }
}
