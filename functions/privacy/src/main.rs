fn main() -> std::process::ExitCode {
    common::runtime::service_main("privacy", |c: &privacy::Config| &c.platform, privacy::run)
}
