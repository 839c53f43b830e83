use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = auth::Config::parse();
        common::telemetry::init(&config.platform);
        match auth::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "auth stopped");
                ExitCode::FAILURE
            }
        }
    })
}
