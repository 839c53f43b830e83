use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let config = retention::Config::parse();
        common::telemetry::init(&config.platform);
        retention::run(config).await.exit_code()
    })
}
