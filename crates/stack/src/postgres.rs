//! PostgreSQL: a private cluster (`initdb`) in the stack's data directory, on its own port,
//! with one database and one login role per service.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use nix::unistd::{Uid, User};
use sqlx::{Connection, PgConnection};

use crate::catalog::SERVICE_DATABASES;
use crate::component::{Component, Health, ProcessSpec};
use crate::config::StackConfig;
use crate::error::StackError;

/// The superuser password of clusters made before the stack generated one.
pub(crate) const LEGACY_SUPERUSER_PASSWORD: &str = "postgres";
const NAME: &str = "postgres";

/// The PostgreSQL component.
pub struct Postgres;

impl Postgres {
    pub fn cluster_dir(cfg: &StackConfig) -> PathBuf {
        cfg.data_dir.join("postgres")
    }
}

/// PostgreSQL refuses to run as root; as root we run it as the `postgres` system user
/// (created by Debian's package), which must own the cluster directory.
fn run_as(cfg: &StackConfig) -> Result<Option<(u32, u32)>, StackError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let _ = cfg;
    let user = User::from_name("postgres")
        .map_err(|e| StackError::setup(NAME, format!("look up user postgres: {e}")))?
        .ok_or_else(|| {
            StackError::setup(
                NAME,
                "running as root but there is no `postgres` user to run the server as \
                 (install Debian's postgresql package or run as a normal user)",
            )
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// Finds `initdb` and `postgres`: the configured directory, Debian's
/// `/usr/lib/postgresql/<newest>/bin`, then `PATH`. Installs Debian's `postgresql` when none
/// is found.
pub(crate) fn bin_dir(cfg: &StackConfig) -> Result<PathBuf, StackError> {
    if let Some(dir) = &cfg.pg_bin_dir {
        return if dir.join("initdb").exists() {
            Ok(dir.clone())
        } else {
            Err(StackError::setup(
                NAME,
                format!("no initdb in {}", dir.display()),
            ))
        };
    }
    if let Some(dir) = search_bin_dir() {
        return Ok(dir);
    }
    install_postgres()?;
    search_bin_dir()
        .ok_or_else(|| StackError::setup(NAME, "postgresql installed but initdb still not found"))
}

fn search_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
    })
}

fn install_postgres() -> Result<(), StackError> {
    eprintln!("postgres: server binaries not found; installing Debian's postgresql package");
    crate::apt::install(NAME, &["postgresql"])
}

fn initdb(cfg: &StackConfig, cluster: &Path) -> Result<(), StackError> {
    let bin = bin_dir(cfg)?;
    let user = run_as(cfg)?;
    std::fs::create_dir_all(cluster)
        .map_err(StackError::io(format!("create {}", cluster.display())))?;
    let pwfile = cfg.data_dir.join("run").join("pg-superuser-password");
    std::fs::write(&pwfile, cfg.superuser_password())
        .map_err(StackError::io("write password file"))?;
    if let Some((uid, gid)) = user {
        // The server user must reach the cluster through every parent directory (a test's
        // temporary directory is 0700) and own the cluster itself.
        for dir in [cfg.data_dir.as_path(), &cfg.data_dir.join("run")] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
        for path in [cluster, pwfile.as_path()] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(StackError::io(format!("chown {}", path.display())))?;
        }
    }
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(cluster)
        .args(["-U", "postgres", "-E", "UTF8", "--locale=C"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()));
    if let Some((uid, gid)) = user {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
    }
    let output = cmd.output().map_err(StackError::io("run initdb"))?;
    let _ = std::fs::remove_file(&pwfile);
    if !output.status.success() {
        // A half-initialised cluster would make the next `up` skip initdb.
        let _ = std::fs::remove_dir_all(cluster);
        return Err(StackError::setup(
            NAME,
            format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    allow_host(cfg, cluster)
}

/// initdb's pg_hba.conf admits TCP clients from loopback only. A stack that listens on
/// another address (the chaos soak's, on a veth for its network namespaces) is reached from
/// that address: admit it too, with the same password authentication.
fn allow_host(cfg: &StackConfig, cluster: &Path) -> Result<(), StackError> {
    let Ok(host) = cfg.host.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    if host.is_loopback() {
        return Ok(());
    }
    let hba = cluster.join("pg_hba.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&hba)
        .map_err(StackError::io(format!("open {}", hba.display())))?;
    std::io::Write::write_all(
        &mut file,
        format!("host    all             all             {host}/32            scram-sha-256\n")
            .as_bytes(),
    )
    .map_err(StackError::io(format!("append to {}", hba.display())))
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// The roles and databases of `docs/architecture.md` as SQL. The Docker image of Postgres runs
/// this file once on an empty volume (docker-compose.yml); the local stack runs the same file
/// on every `up`, so both create exactly the same things. `deploy/check_sources.py` checks it
/// against [`SERVICE_DATABASES`](crate::catalog::SERVICE_DATABASES).
const INIT_SQL: &str = include_str!("../../../deploy/postgres/init.sql");

/// The statements of [`INIT_SQL`] one by one: `CREATE DATABASE` cannot run inside the implicit
/// transaction of a multi-statement query.
fn init_statements() -> Vec<String> {
    let without_comments: String = INIT_SQL
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Creates every service's role and database, owned by the role, and revokes `CONNECT`
/// from `PUBLIC` so that each role is refused on every database but its own; then sets each
/// role's generated password ([`StackConfig::db_password`]). Idempotent: a role or database
/// that already exists is kept as it is, its password set again.
async fn bootstrap_roles(cfg: &StackConfig) -> Result<(), StackError> {
    let sql = |e: sqlx::Error| StackError::setup(NAME, format!("create roles and databases: {e}"));
    let mut conn = connect(&cfg.pg_admin_url()).await.map_err(sql)?;
    create_roles(&mut conn).await.map_err(sql)?;
    for db in SERVICE_DATABASES {
        let password = cfg
            .db_password(db.role)
            .map_err(StackError::io(format!("password of {}", db.role)))?;
        // DDL takes no bind parameters; the role is a catalogue constant and the password
        // hex, quoted anyway. The server hashes it with SCRAM (password_encryption).
        sqlx::query(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            db.role,
            password.replace('\'', "''")
        ))
        .execute(&mut conn)
        .await
        .map_err(sql)?;
    }
    Ok(())
}

async fn create_roles(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for statement in init_statements() {
        match sqlx::query(&statement).execute(&mut *conn).await {
            Ok(_) => {}
            // 42710 duplicate_object (role), 42P04 duplicate_database: made by an earlier `up`.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42710") | Some("42P04")) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[async_trait]
impl Component for Postgres {
    fn name(&self) -> &str {
        NAME
    }

    async fn prepare(&self, cfg: &StackConfig) -> Result<(), StackError> {
        let cluster = Self::cluster_dir(cfg);
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            bin_dir(&cfg)?;
            if cluster.join("PG_VERSION").exists() {
                return Ok(());
            }
            initdb(&cfg, &cluster)
        })
        .await
        .map_err(|e| StackError::setup(NAME, format!("initdb task: {e}")))?
    }

    fn process(&self, cfg: &StackConfig) -> Result<Option<ProcessSpec>, StackError> {
        // `status` and `down` build the spec too: they must never install anything, so the
        // install happens in `prepare` and the spec is built again after it.
        let bin = cfg
            .pg_bin_dir
            .clone()
            .or_else(search_bin_dir)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let mut spec = ProcessSpec::new(bin.join("postgres"))
            .args([
                "-D".to_owned(),
                Self::cluster_dir(cfg).display().to_string(),
            ])
            .args(["-p".to_owned(), cfg.pg_port.to_string()])
            .args(["-h", cfg.host.as_str()])
            // TCP only: a Unix socket path under a deep data directory can exceed the
            // 107-byte limit, and nothing here needs one.
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=on", "-c", "max_connections=300"])
            // Per-statement counts and times (`pg_stat_statements`, contrib of the same
            // package): the saga benchmark reads them to say which statements a saga costs.
            .args(["-c", "shared_preload_libraries=pg_stat_statements"])
            .port(cfg.pg_port);
        spec.user = run_as(cfg)?;
        spec.env_remove = vec!["PGDATA".into(), "PGPORT".into()];
        // SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        spec.stop_signal = Signal::SIGINT;
        Ok(Some(spec))
    }

    async fn health(&self, cfg: &StackConfig) -> Health {
        match connect(&cfg.pg_admin_url()).await {
            Ok(mut conn) => match sqlx::query("SELECT 1").execute(&mut conn).await {
                Ok(_) => Health::Healthy,
                Err(e) => Health::Unhealthy(e.to_string()),
            },
            Err(e) => Health::Unhealthy(e.to_string()),
        }
    }

    async fn after_start(&self, cfg: &StackConfig) -> Result<(), StackError> {
        bootstrap_roles(cfg).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_sql_covers_every_catalogued_database() {
        let statements = init_statements();
        assert_eq!(statements.len(), 1 + 4 * SERVICE_DATABASES.len());
        for db in SERVICE_DATABASES {
            let create = format!("CREATE DATABASE {} OWNER {}", db.database, db.role);
            assert!(statements.contains(&create), "{create} missing");
        }
    }

    #[test]
    fn a_stack_on_another_address_admits_it_and_loopback_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("saga-hba-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hba = dir.join("pg_hba.conf");
        std::fs::write(&hba, "host all all 127.0.0.1/32 scram-sha-256\n").unwrap();
        let mut cfg = StackConfig::defaults();
        allow_host(&cfg, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(&hba).unwrap().lines().count(), 1);
        cfg.host = "10.77.3.1".into();
        allow_host(&cfg, &dir).unwrap();
        let text = std::fs::read_to_string(&hba).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            text.lines()
                .last()
                .is_some_and(|l| l.contains("10.77.3.1/32") && l.ends_with("scram-sha-256")),
            "{text}"
        );
    }
}
