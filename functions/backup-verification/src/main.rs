use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = backup_verification::Config::parse();
    common::telemetry::init(&config.platform);
    backup_verification::run(config).await.exit_code()
}
