//! The Postgres pool and migrations. Shared crates (outbox, inbox) each ship a
//! `pub static MIGRATOR` with their own version range (outbox 10001.., inbox 20001..;
//! services use timestamp versions); a service merges them into one ordered list so a single
//! `_sqlx_migrations` table records everything applied to its database.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::{Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{DatabaseConfig, redact_url};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {url} within {waited:?}: {source}")]
    Connect {
        url: String,
        waited: Duration,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration version {version} is defined twice ({first} and {second})")]
    DuplicateMigration {
        version: i64,
        first: String,
        second: String,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// Connects, retrying with exponential backoff (100 ms doubling to 2 s) until
/// `cfg.connect_timeout_secs`, so a service started together with Postgres waits for it
/// instead of failing.
pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    let deadline = Duration::from_secs(cfg.connect_timeout_secs);
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    let options = connect_options(cfg).map_err(|source| DbError::Connect {
        url: redact_url(cfg.url.expose()),
        waited: Duration::ZERO,
        source,
    })?;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if started.elapsed() + backoff < deadline && is_transient(&e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "database not reachable yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(source) => {
                return Err(DbError::Connect {
                    url: redact_url(cfg.url.expose()),
                    waited: started.elapsed(),
                    source,
                });
            }
        }
    }
}

/// The URL's options plus the session settings every connection gets.
pub fn connect_options(cfg: &DatabaseConfig) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(cfg.url.expose())?;
    Ok(options.options([(
        "statement_timeout",
        format!("{}ms", cfg.statement_timeout_ms),
    )]))
}

/// Errors worth retrying while the server starts; a wrong password or a missing database
/// will not fix itself.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // 57P03 cannot_connect_now: the server is starting up or shutting down.
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// Merges `migrators` into one list ordered by version and applies what is missing.
pub async fn migrate(pool: &PgPool, migrators: &[&Migrator]) -> Result<(), DbError> {
    merged(migrators)?.run(pool).await?;
    Ok(())
}

/// The merged migrator, refusing two migrations with one version.
pub fn merged(migrators: &[&Migrator]) -> Result<Migrator, DbError> {
    let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
    for migrator in migrators {
        // Only up migrations are applied at start; reverting is an operator's job.
        for m in migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
        {
            if let Some(existing) = by_version.get(&m.version) {
                return Err(DbError::DuplicateMigration {
                    version: m.version,
                    first: existing.description.to_string(),
                    second: m.description.to_string(),
                });
            }
            by_version.insert(m.version, m.clone());
        }
    }
    let mut merged = Migrator::DEFAULT;
    merged.migrations = Cow::Owned(by_version.into_values().collect());
    // A database may hold migrations from a newer build of a shared crate; they are not
    // ours to judge.
    merged.set_ignore_missing(true);
    Ok(merged)
}

/// `SELECT 1` on the pool; used by readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::migrate::MigrationType;

    fn migrator(versions: &[(i64, &'static str)]) -> Migrator {
        let mut m = Migrator::DEFAULT;
        m.migrations = Cow::Owned(
            versions
                .iter()
                .map(|(v, d)| {
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Borrowed("SELECT 1"),
                        false,
                    )
                })
                .collect(),
        );
        m
    }

    #[tokio::test]
    async fn every_connection_has_the_statement_timeout() {
        let Ok(url) = std::env::var("SAGA_PG_URL") else {
            // Unit tests without a stack (plain `cargo test -p`); `cargo xtask test` sets it.
            return;
        };
        let mut cfg = DatabaseConfig::new(url);
        cfg.statement_timeout_ms = 150;
        let pool = connect(&cfg).await.unwrap();
        let (shown,): (String,) = sqlx::query_as("SHOW statement_timeout")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(shown, "150ms");
        let err = sqlx::query("SELECT pg_sleep(5)")
            .execute(&pool)
            .await
            .unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {err}");
    }

    #[test]
    fn merges_in_version_order_and_rejects_duplicates() {
        let service = migrator(&[(20260101000001, "service")]);
        let outbox = migrator(&[(10001, "outbox"), (10002, "outbox2")]);
        let inbox = migrator(&[(20001, "inbox")]);
        let m = merged(&[&service, &outbox, &inbox]).unwrap();
        let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![10001, 10002, 20001, 20260101000001]);

        let clash = migrator(&[(10001, "other")]);
        assert!(matches!(
            merged(&[&outbox, &clash]),
            Err(DbError::DuplicateMigration { version: 10001, .. })
        ));
    }
}
