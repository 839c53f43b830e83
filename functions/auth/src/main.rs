fn main() -> std::process::ExitCode {
    common::runtime::service_main("auth", |c: &auth::Config| &c.platform, auth::run)
}
