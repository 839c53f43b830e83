fn main() -> std::process::ExitCode {
    common::runtime::service_main(
        "questionnaire-scoring",
        |c: &questionnaire_scoring::Config| &c.platform,
        questionnaire_scoring::run,
    )
}
