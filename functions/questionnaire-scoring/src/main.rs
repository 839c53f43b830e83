use std::process::ExitCode;

use clap::Parser;
use questionnaire_scoring::Config;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = Config::parse();
        common::telemetry::init(&config.platform);
        match questionnaire_scoring::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "questionnaire-scoring stopped");
                ExitCode::FAILURE
            }
        }
    })
}
