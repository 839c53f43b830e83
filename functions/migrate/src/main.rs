use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = migrate::Config::parse();
    common::telemetry::init(&config.platform);
    match migrate::run(config).await {
        Ok(applied) => {
            tracing::info!(applied, "migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "migration failed");
            ExitCode::FAILURE
        }
    }
}
