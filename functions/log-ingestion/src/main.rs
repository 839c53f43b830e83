fn main() -> std::process::ExitCode {
    common::runtime::service_main(
        "log-ingestion",
        |c: &log_ingestion::api::Config| &c.platform,
        log_ingestion::api::run,
    )
}
