use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = log_ingestion::api::Config::parse();
        common::telemetry::init(&config.platform);
        match log_ingestion::api::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "log-ingestion stopped");
                ExitCode::FAILURE
            }
        }
    })
}
