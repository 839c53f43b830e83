//! The Tokio runtime every function's `main` runs on.

use std::future::Future;
use std::time::Duration;

/// How long the end of `main` waits for blocking work that is still running.
pub const BLOCKING_BUDGET: Duration = Duration::from_millis(200);

/// Runs `main` on a multi-threaded runtime, then shuts the runtime down without waiting more
/// than [`BLOCKING_BUDGET`] for blocking tasks still running. A client's DNS lookup runs on a
/// blocking thread, and glibc holds it for 10 s (5 s, twice) when the resolver does not answer;
/// dropping the runtime (what `#[tokio::main]` does) would wait for it after the service has
/// stopped cleanly, past Cloud Run's 10 s from SIGTERM to SIGKILL.
pub fn block_on<F: Future>(main: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("the Tokio runtime cannot start: {e}"));
    let out = runtime.block_on(main);
    runtime.shutdown_timeout(BLOCKING_BUDGET);
    out
}

/// The `main` of a service: parses its configuration, starts telemetry, and runs it on
/// [`block_on`]; exit 0 after a clean stop, else the cause is logged and the exit is 1.
pub fn service_main<C, F, Fut, E>(
    name: &str,
    platform: fn(&C) -> &crate::config::PlatformConfig,
    run: F,
) -> std::process::ExitCode
where
    C: clap::Parser,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    block_on(async {
        let config = C::parse();
        crate::telemetry::init(platform(&config));
        match run(config).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{name} stopped");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn blocking_work_still_running_does_not_hold_the_end_of_main() {
        let started = Instant::now();
        let out = block_on(async {
            // A stand-in for a DNS lookup that never gets an answer.
            drop(tokio::task::spawn_blocking(|| {
                std::thread::sleep(Duration::from_secs(10))
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        });
        assert_eq!(out, 7);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "returned after {:?}",
            started.elapsed()
        );
    }
}
