use std::process::ExitCode;

use clap::Parser;
use privacy::Config;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = Config::parse();
        common::telemetry::init(&config.platform);
        match privacy::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "privacy stopped");
                ExitCode::FAILURE
            }
        }
    })
}
