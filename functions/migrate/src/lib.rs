//! `migrate`: Cloud Run job that applies `migrations/` before a deploy. Services never migrate
//! on start; the pipeline runs this job, the local platform runs it once after start-up.

use common::config::{DbConfig, PlatformConfig};

/// Configuration, from the environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "migrate", about = "Applies the schema migrations")]
pub struct Config {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub db: DbConfig,
}

/// Applies every pending migration; a second run is a no-op.
pub async fn run(config: Config) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let pool = common::db::connect(&config.db).await?;
    let before: i64 = applied(&pool).await;
    common::db::MIGRATOR.run(&pool).await?;
    let after: i64 = applied(&pool).await;
    pool.close().await;
    Ok(usize::try_from(after - before).unwrap_or(0))
}

async fn applied(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}
