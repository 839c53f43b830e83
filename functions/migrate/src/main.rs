use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
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
    })
}
