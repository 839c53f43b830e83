use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = retention::Config::parse();
    common::telemetry::init(&config.platform);
    retention::run(config).await.exit_code()
}
