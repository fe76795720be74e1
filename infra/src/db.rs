//! The connection pool and the migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// Every migration in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Creates the database named in `url` when it does not exist yet.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let exists = Postgres::database_exists(url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", redact_url(url)))?;
    if !exists {
        tracing::info!(database = %redact_url(url), "creating the database");
        Postgres::create_database(url)
            .await
            .with_context(|| format!("cannot create the database {}", redact_url(url)))?;
    }
    Ok(())
}

/// Our own pool (postgres-es's helper caps it at 10 and panics when the database is down). A
/// request waits at most `acquire_timeout` for a connection: when PostgreSQL is down it hears so
/// then, rather than hanging.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| {
            format!(
                "DATABASE_URL is not a valid PostgreSQL URL: {}",
                redact_url(url)
            )
        })?
        .application_name("webinar");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to {}", redact_url(url)))
}

/// Creates the database if needed, connects, and applies the migrations.
pub async fn prepare(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    ensure_database(url).await?;
    let pool = connect(url, max_connections, acquire_timeout).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying the database migrations")?;
    Ok(pool)
}

/// Whether every embedded migration has been applied (for `/readyz`).
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(pool)
            .await?;
    Ok(applied.unwrap_or(0) >= latest)
}

/// The URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}
