// Rule tests for rust.yml: `semgrep --test .github/semgrep`.

fn tls() {
    // ruleid: rust-tls-verification-disabled
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build();
    // ok: rust-tls-verification-disabled
    let client = reqwest::Client::builder().https_only(true).build();
}

fn jwt() {
    let mut validation = Validation::new(Algorithm::HS256);
    // ruleid: rust-jwt-signature-not-verified
    validation.insecure_disable_signature_validation();
    // ruleid: rust-jwt-signature-not-verified
    validation.validate_exp = false;
    // ok: rust-jwt-signature-not-verified
    validation.validate_exp = true;
}

fn raw() {
    // ruleid: rust-unsafe-code
    let x = unsafe { std::mem::zeroed::<u8>() };
    // ok: rust-unsafe-code
    let unsafe_count = 0;
}

fn logs(user: &User, token: &str) {
    // ruleid: rust-secret-field-logged
    tracing::info!(password = %user.password, "login");
    // ruleid: rust-secret-field-logged
    warn!(?token, "refresh failed");
    // ok: rust-secret-field-logged
    info!(user_id = %user.id, "login succeeded");
}

fn settings() {
    // ruleid: rust-env-read-outside-config
    let url = std::env::var("DATABASE_URL");
}

async fn sql(pool: &PgPool, table: &str) {
    // ruleid: rust-sql-built-with-format
    sqlx::query(&format!("DELETE FROM {table}")).execute(pool).await;
    // ok: rust-sql-built-with-format
    sqlx::query("DELETE FROM sleep_logs WHERE id = $1").bind(1).execute(pool).await;
}

async fn sql_constant(pool: &PgPool) {
    // ok: rust-sql-built-with-format
    sqlx::query(&format!("{SELECT} WHERE id = $1")).bind(1).execute(pool).await;
}

#[cfg(test)]
mod tests {
    fn emit() {
        // ok: rust-env-read-outside-config
        if let Some(dir) = std::env::var_os("FHIR_OUT_DIR") {}
    }
}
