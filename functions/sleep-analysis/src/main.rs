fn main() -> std::process::ExitCode {
    common::runtime::service_main(
        "sleep-analysis",
        |c: &sleep_analysis::Config| &c.platform,
        sleep_analysis::run,
    )
}
