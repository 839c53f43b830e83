use std::process::ExitCode;

use clap::Parser;
use questionnaire_scoring::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    common::telemetry::init(&config.platform);
    match questionnaire_scoring::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "questionnaire-scoring stopped");
            ExitCode::FAILURE
        }
    }
}
