use std::process::ExitCode;

use clap::Parser;
use privacy::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    common::telemetry::init(&config.platform);
    match privacy::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "privacy stopped");
            ExitCode::FAILURE
        }
    }
}
