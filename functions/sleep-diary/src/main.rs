use std::process::ExitCode;

use clap::Parser;
use sleep_diary::Config;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = Config::parse();
        common::telemetry::init(&config.platform);
        match sleep_diary::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "sleep-diary stopped");
                ExitCode::FAILURE
            }
        }
    })
}
