use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = sleep_analysis::Config::parse();
        common::telemetry::init(&config.platform);
        match sleep_analysis::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "sleep-analysis stopped");
                ExitCode::FAILURE
            }
        }
    })
}
