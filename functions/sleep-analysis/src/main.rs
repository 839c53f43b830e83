use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = sleep_analysis::Config::parse();
    common::telemetry::init(&config.platform);
    match sleep_analysis::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sleep-analysis stopped");
            ExitCode::FAILURE
        }
    }
}
