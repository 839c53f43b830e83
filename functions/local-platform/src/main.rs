use std::process::ExitCode;

use clap::Parser;

mod scheduler;

/// Local stand-in for the load balancer, and the demo.
#[derive(Debug, clap::Parser)]
#[command(name = "local-platform")]
enum Command {
    /// Serve the single local entry point.
    Gateway(Box<local_platform::Config>),
    /// Import the sample files for a demo user and print the nights.
    Demo(local_platform::demo::DemoArgs),
    /// Fire the jobs of scheduler/*.yaml on their schedules.
    Scheduler(scheduler::SchedulerArgs),
    /// Fire one scheduled job now.
    RunJob(scheduler::RunJobArgs),
}

fn main() -> ExitCode {
    common::runtime::block_on(async {
        let result = match Command::parse() {
            Command::Gateway(config) => {
                common::telemetry::init(&config.platform);
                local_platform::run(*config).await
            }
            Command::Demo(args) => local_platform::demo::run(args).await,
            Command::Scheduler(args) => {
                common::telemetry::init(&args.platform);
                scheduler::run_scheduler(args).await
            }
            Command::RunJob(args) => {
                common::telemetry::init(&args.scheduler.platform);
                scheduler::run_job(args).await
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("local-platform: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
