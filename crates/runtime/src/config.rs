//! The configuration sections every service has, and loading a service's whole config.

use std::collections::BTreeMap;
use std::path::Path;

use saga_consumer::ConsumerConfig;
use saga_kafka::KafkaConfig;
use saga_outbox::RelayConfig;
use saga_service_kit::app::{Components, RegistryConfig};
use saga_service_kit::auth::AuthConfig;
use saga_service_kit::config::{ConfigError, DatabaseConfig, HttpConfig};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `http`, `database`, `kafka`, `registry`, `consumer`, `relay`, `components`: the sections
/// every service reads. A service puts it in its own config with `#[serde(flatten)]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    /// `group_id` empty or unset means the service's default group
    /// ([`ServiceConfig::DEFAULT_GROUP`], [`RuntimeConfig::consumer_for`]).
    /// A plain `#[serde(default)]` on purpose: a default *function* would only apply when the
    /// whole section is missing, and setting any one `APP_CONSUMER__*` variable would leave
    /// the group id empty.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    #[serde(default)]
    pub relay: RelayConfig,
    /// Which parts run (tests switch the relay off and drain the outbox themselves).
    #[serde(default)]
    pub components: Components,
    /// `auth.admin_token`: the bearer token of the service's admin routes.
    #[serde(default)]
    pub auth: AuthConfig,
    /// How long processed-message records are kept (`retention.inbox_hours`).
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `retention` section: bounded growth of the shared tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Inbox rows older than this are purged. It must exceed the longest time a message can
    /// be redelivered after it was applied (a dead letter replayed by hand days later would
    /// otherwise be applied twice), hence days. 0 keeps everything.
    pub inbox_hours: u64,
    /// How often the purge runs.
    pub purge_every_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            inbox_hours: 7 * 24,
            purge_every_secs: 3600,
        }
    }
}

impl RuntimeConfig {
    /// The top-level keys this struct reads.
    pub const SECTIONS: &'static [&'static str] = &[
        "http",
        "database",
        "kafka",
        "registry",
        "consumer",
        "relay",
        "components",
        "auth",
        "retention",
    ];

    /// The `consumer` section with an empty group id replaced by `default_group` (the one
    /// place that decides the default group of every service).
    pub fn consumer_for(&self, default_group: &str) -> ConsumerConfig {
        let mut consumer = self.consumer.clone();
        if consumer.group_id.trim().is_empty() {
            consumer.group_id = default_group.to_owned();
        }
        consumer
    }
}

/// A service's whole configuration: the shared sections plus its own.
pub trait ServiceConfig: DeserializeOwned {
    /// The service's name: the default consumer group and the telemetry service name.
    const NAME: &'static str;
    /// The consumer group when `consumer.group_id` is empty or unset.
    const DEFAULT_GROUP: &'static str = Self::NAME;
    /// The service's own top-level keys (besides [`RuntimeConfig::SECTIONS`]).
    const SECTIONS: &'static [&'static str] = &[];

    fn runtime(&self) -> &RuntimeConfig;
    fn runtime_mut(&mut self) -> &mut RuntimeConfig;
}

/// Names a service whose configuration is the shared sections only.
pub trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

/// The whole configuration of a service that reads only [`RuntimeConfig`]'s sections
/// (inventory, payment): `pub type Config = SharedConfig<Name>;` instead of a struct and a
/// [`ServiceConfig`] impl per service.
#[derive(Deserialize)]
#[serde(bound = "")]
pub struct SharedConfig<N> {
    #[serde(flatten)]
    pub runtime: RuntimeConfig,
    #[serde(skip)]
    name: std::marker::PhantomData<fn() -> N>,
}

impl<N> SharedConfig<N> {
    pub fn new(runtime: RuntimeConfig) -> Self {
        Self {
            runtime,
            name: std::marker::PhantomData,
        }
    }
}

impl<N> Clone for SharedConfig<N> {
    fn clone(&self) -> Self {
        Self::new(self.runtime.clone())
    }
}

impl<N> std::fmt::Debug for SharedConfig<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.runtime.fmt(f)
    }
}

impl<N: ServiceName> ServiceConfig for SharedConfig<N> {
    const NAME: &'static str = N::NAME;
    fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }
    fn runtime_mut(&mut self) -> &mut RuntimeConfig {
        &mut self.runtime
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `#[serde(flatten)]` cannot deny unknown fields, so the top level is checked here: a
    /// misspelt `APP_CONSUMR__...` must not be silently ignored.
    #[error("invalid configuration: unknown section `{0}`")]
    UnknownSection(String),
}

/// Loads `C` from defaults, the TOML file (`file`, else `$APP_CONFIG_FILE`) and `APP_*`
/// variables, refuses unknown top-level sections, and fills the consumer group default.
pub fn load<C: ServiceConfig>(file: Option<&Path>) -> Result<C, LoadError> {
    let from_env = std::env::var_os(saga_service_kit::config::CONFIG_FILE_ENV);
    let file = file.map(Path::to_path_buf).or(from_env.map(Into::into));
    let figment = saga_service_kit::config::figment(file.as_deref())?;
    let sections: BTreeMap<String, figment::value::Value> =
        figment.extract().map_err(ConfigError::from)?;
    if let Some(unknown) = sections.keys().find(|k| {
        !RuntimeConfig::SECTIONS.contains(&k.as_str()) && !C::SECTIONS.contains(&k.as_str())
    }) {
        return Err(LoadError::UnknownSection(unknown.clone()));
    }
    let mut config: C = figment.extract().map_err(ConfigError::from)?;
    let runtime = config.runtime_mut();
    runtime.consumer = runtime.consumer_for(C::DEFAULT_GROUP);
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;
    use saga_consumer::Membership;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(flatten)]
        runtime: RuntimeConfig,
        #[serde(default)]
        extra: Option<u32>,
    }

    impl ServiceConfig for Sample {
        const NAME: &'static str = "sample-service";
        const SECTIONS: &'static [&'static str] = &["extra"];
        fn runtime(&self) -> &RuntimeConfig {
            &self.runtime
        }
        fn runtime_mut(&mut self) -> &mut RuntimeConfig {
            &mut self.runtime
        }
    }

    fn base_env(jail: &mut figment::Jail) {
        jail.set_env("APP_DATABASE__URL", "postgres://u:p@h/d");
        jail.set_env("APP_REGISTRY__URL", "http://127.0.0.1:1");
    }

    #[test]
    fn one_consumer_variable_keeps_the_default_group() {
        figment::Jail::expect_with(|jail| {
            base_env(jail);
            jail.set_env("APP_CONSUMER__MEMBERSHIP", "assign");
            let cfg: Sample = load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.runtime.consumer.group_id, "sample-service");
            assert_eq!(cfg.runtime.consumer.membership, Membership::Assign);
            Ok(())
        });
    }

    #[test]
    fn explicit_group_and_own_sections_are_kept() {
        figment::Jail::expect_with(|jail| {
            base_env(jail);
            jail.set_env("APP_CONSUMER__GROUP_ID", "mine");
            jail.set_env("APP_EXTRA", "7");
            jail.set_env("APP_RELAY__POLL_INTERVAL_MS", "25");
            let cfg: Sample = load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.runtime.consumer.group_id, "mine");
            assert_eq!(cfg.extra, Some(7));
            assert_eq!(cfg.runtime.relay.poll_interval_ms, 25);
            Ok(())
        });
    }

    #[test]
    fn unknown_sections_and_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            base_env(jail);
            jail.set_env("APP_CONSUMR__GROUP_ID", "typo");
            let err = load::<Sample>(None).unwrap_err().to_string();
            assert!(err.contains("consumr"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            base_env(jail);
            jail.set_env("APP_CONSUMER__GROUPID", "typo");
            let err = load::<Sample>(None).unwrap_err().to_string();
            assert!(err.contains("groupid"), "{err}");
            Ok(())
        });
    }
}
