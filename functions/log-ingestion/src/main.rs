use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = log_ingestion::api::Config::parse();
    common::telemetry::init(&config.platform);
    match log_ingestion::api::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "log-ingestion stopped");
            ExitCode::FAILURE
        }
    }
}
