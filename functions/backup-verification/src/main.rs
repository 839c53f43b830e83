use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = backup_verification::Config::parse();
        common::telemetry::init(&config.platform);
        backup_verification::run(config).await.exit_code()
    })
}
