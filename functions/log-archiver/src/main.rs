use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = log_archiver::Config::parse();
        common::telemetry::init(&config.platform);
        log_archiver::run(config).await.exit_code()
    })
}
