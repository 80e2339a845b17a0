//! Layered configuration: serde defaults, then an optional TOML file, then `APP_*` environment
//! variables (`__` separates nesting levels: `APP_DATABASE__URL` sets `database.url`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// Environment variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "APP_CONFIG_FILE";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// figment's message names the offending key and the layer it came from.
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: `{key}`: {message}")]
    Validation { key: String, message: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        Self::Invalid(Box::new(e))
    }
}

/// Loads `T` from its serde defaults, the TOML file (`file`, else `$APP_CONFIG_FILE`), then
/// the `APP_` environment. Missing keys without a default and mistyped values are reported
/// with the key's full path.
pub fn load<T: serde::de::DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    let from_env = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
    let file = file.map(Path::to_path_buf).or(from_env);
    figment(file.as_deref())?
        .extract()
        .map_err(ConfigError::from)
}

/// The figment behind [`load`], for services that want to add layers (e.g. CLI flags).
pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::new();
    if let Some(path) = file {
        // An explicitly named file that is missing is a mistake, not an empty layer.
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.to_path_buf()));
        }
        fig = fig.merge(Toml::file(path));
    }
    // These two variables steer the loader and telemetry; they are not config keys.
    Ok(fig.merge(
        Env::prefixed("APP_")
            .split("__")
            .ignore(&["config_file", "log_format"]),
    ))
}

/// A string that never appears in logs or `Debug` output. Use [`Secret::expose`] where the
/// real value is needed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

fn default_max_connections() -> u32 {
    16
}

fn default_connect_timeout_secs() -> u64 {
    30
}

fn default_statement_timeout_ms() -> u64 {
    30_000
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Secret,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long [`crate::db::connect`] keeps retrying while Postgres is not reachable yet.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// PostgreSQL `statement_timeout` of every connection of the pool: a statement stuck on
    /// a lock or a runaway query is cancelled instead of holding its connection (and any
    /// locks and the xmin horizon) forever. 0 disables it.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

impl DatabaseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            max_connections: default_max_connections(),
            connect_timeout_secs: default_connect_timeout_secs(),
            statement_timeout_ms: default_statement_timeout_ms(),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(self.url.expose()))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

/// `postgres://user:pw@host/db?password=x` -> `postgres://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return "***".to_owned(),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Sample {
        #[serde(default)]
        http: HttpConfig,
        database: DatabaseConfig,
    }

    #[test]
    fn database_debug_hides_password() {
        let cfg =
            DatabaseConfig::new("postgres://registry_svc:hunter2@127.0.0.1:55432/registry_db");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://registry_svc:***@127.0.0.1:55432/registry_db"),
            "{shown}"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=x"),
            "postgres://u@h/db?sslmode=disable&password=***"
        );
    }

    #[test]
    fn layers_defaults_file_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "app.toml",
                "[http]\nlisten = \"127.0.0.1:9000\"\n[database]\nurl = \"postgres://a:b@h/d\"\nmax_connections = 3\n",
            )?;
            jail.set_env("APP_DATABASE__MAX_CONNECTIONS", "7");
            jail.set_env("APP_LOG_FORMAT", "json");
            let cfg: Sample = load(Some(Path::new("app.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.http.listen, "127.0.0.1:9000".parse().unwrap());
            assert_eq!(cfg.database.max_connections, 7);
            assert_eq!(cfg.database.url.expose(), "postgres://a:b@h/d");
            Ok(())
        });
    }

    #[test]
    fn error_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APP_DATABASE__URL", "postgres://x@h/d");
            jail.set_env("APP_HTTP__LISTEN", "not-an-address");
            let err = load::<Sample>(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("http.listen"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|_jail| {
            let err = load::<Sample>(None).unwrap_err().to_string();
            assert!(err.contains("database"), "{err}");
            Ok(())
        });
    }
}
