//! PostgreSQL's own ceiling and the lock waits of a run: the two figures that say whether a
//! saga rate is limited by commits or by contended rows.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use saga_testkit::TestStack;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// pgbench's result: single-row INSERT commits per second on the stack's cluster.
#[derive(Debug, Clone, Copy)]
pub struct PgCeiling {
    pub commits_per_sec: f64,
    pub clients: u32,
}

/// `pgbench` from PATH, else from the Debian server package's directory (where the stack
/// finds `initdb` too).
fn pgbench_binary() -> PathBuf {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
    match std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("pgbench"))
            .find(|c| c.is_file())
    }) {
        Some(found) => found,
        None => debian,
    }
}

/// Single-row INSERT transactions (`fsync` and `synchronous_commit` as the cluster has
/// them), `clients` connections for `secs`, in a fresh database of the stack: the cluster's
/// commit ceiling, measured the same way as STACK-FACTS' 5,140 tps.
pub async fn pgbench(stack: &TestStack, clients: u32, secs: u32) -> anyhow::Result<PgCeiling> {
    let db = stack.fresh_database().await;
    sqlx::query("CREATE TABLE bench_commits (id bigserial PRIMARY KEY, v int NOT NULL)")
        .execute(&db.pool)
        .await?;
    let script = tempfile_script()?;
    let out = tokio::process::Command::new(pgbench_binary())
        .arg("-n")
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &secs.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(&db.url)
        .output()
        .await
        .context("run pgbench (apt-get install postgresql-client or postgresql)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    // "tps = 4321.123456 (without initial connection time)"
    let tps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench output: {text}"))?;
    let _ = db.drop_db().await;
    Ok(PgCeiling {
        commits_per_sec: tps,
        clients,
    })
}

fn tempfile_script() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("bench-commit-{}.sql", uuid::Uuid::new_v4()));
    std::fs::write(&path, "INSERT INTO bench_commits (v) VALUES (1);\n")?;
    Ok(path)
}

/// Samples `pg_stat_activity` every `every` for backends of `databases` waiting on a
/// heavyweight lock (row locks included): sum of waiting backends x interval estimates the
/// time transactions spent queued on each other's locks.
pub struct LockSampler {
    waiting_samples: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    token: CancellationToken,
}

/// Lock waits over a span of time.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockWaits {
    /// Estimated backend-time spent waiting on locks: the mean number of waiting backends
    /// over the samples times the span's wall time (robust to samples skipped under load).
    pub wait: Duration,
    /// Mean number of backends waiting on a lock.
    pub mean_waiters: f64,
}

impl LockSampler {
    pub fn start(admin: PgPool, databases: Vec<String>, every: Duration) -> LockSampler {
        let waiting_samples = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let token = CancellationToken::new();
        let (w, s, t) = (waiting_samples.clone(), samples.clone(), token.clone());
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let waiting: Result<i64, _> = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND datname = ANY($1)",
                )
                .bind(&databases)
                .fetch_one(&admin)
                .await;
                if let Ok(n) = waiting {
                    w.fetch_add(n as u64, Ordering::Relaxed);
                    s.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        LockSampler {
            waiting_samples,
            samples,
            task,
            token,
        }
    }

    /// Waiting backends seen so far (sum over samples) and samples taken.
    pub fn read(&self) -> (u64, u64) {
        (
            self.waiting_samples.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }

    /// Lock waits between two readings taken `elapsed` apart.
    pub fn between(from: (u64, u64), to: (u64, u64), elapsed: Duration) -> LockWaits {
        let samples = to.1.saturating_sub(from.1);
        if samples == 0 {
            return LockWaits::default();
        }
        let mean_waiters = to.0.saturating_sub(from.0) as f64 / samples as f64;
        LockWaits {
            wait: elapsed.mul_f64(mean_waiters),
            mean_waiters,
        }
    }
}

impl Drop for LockSampler {
    fn drop(&mut self) {
        self.token.cancel();
        self.task.abort();
    }
}

/// `pg_stat_database.deadlocks` summed over `databases`.
pub async fn deadlocks(admin: &PgPool, databases: &[String]) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(deadlocks), 0)::bigint FROM pg_stat_database WHERE datname = ANY($1)",
    )
    .bind(databases)
    .fetch_one(admin)
    .await?)
}

/// One statement's share of a phase, from `pg_stat_statements`.
#[derive(Debug, Clone)]
pub struct StatementCost {
    pub database: String,
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
}

/// Statement counts and times per database (`pg_stat_statements`, which the stack preloads):
/// [`Statements::reset`] before a phase, [`Statements::read`] after it. `None` when the
/// cluster was started without the module (another stack): the benchmark then says so
/// instead of failing.
pub struct Statements {
    admin: PgPool,
}

impl Statements {
    pub async fn open(admin: &PgPool) -> Option<Statements> {
        let created = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(admin)
            .await;
        let readable = sqlx::query("SELECT 1 FROM pg_stat_statements LIMIT 1")
            .execute(admin)
            .await;
        match (created, readable) {
            (Ok(_), Ok(_)) => Some(Statements {
                admin: admin.clone(),
            }),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("statement profile off (pg_stat_statements: {e})");
                None
            }
        }
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&self.admin)
            .await?;
        Ok(())
    }

    /// Every statement run in `databases` since the last reset, most called first.
    pub async fn read(&self, databases: &[String]) -> anyhow::Result<Vec<StatementCost>> {
        let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
            "SELECT d.datname::text, s.query, s.calls, s.total_exec_time \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = ANY($1) ORDER BY s.calls DESC",
        )
        .bind(databases)
        .fetch_all(&self.admin)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(database, query, calls, total_ms)| StatementCost {
                database,
                query,
                calls,
                total_ms,
            })
            .collect())
    }
}
