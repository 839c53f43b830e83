fn main() -> std::process::ExitCode {
    common::runtime::service_main(
        "sleep-diary",
        |c: &sleep_diary::Config| &c.platform,
        sleep_diary::run,
    )
}
