use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = log_archiver::Config::parse();
    common::telemetry::init(&config.platform);
    log_archiver::run(config).await.exit_code()
}
