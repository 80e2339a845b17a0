//! The exporter's configuration: `http`, `kafka` (the shared sections) and `lag`.

use saga_kafka::KafkaConfig;
use saga_service_kit::config::HttpConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub lag: LagConfig,
}

/// What to watch and how to judge it (`APP_LAG__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LagConfig {
    /// How often the broker is polled.
    pub poll_interval_ms: u64,
    /// Find groups with ListGroups (tansu and Kafka both answer it).
    pub discover: bool,
    /// Groups watched in addition to (or, without discovery, instead of) the broker's list.
    pub groups: Vec<String>,
    /// Only groups whose id starts with this (empty: all).
    pub group_prefix: String,
    /// Only topics whose name starts with this (empty: all but `__` internal ones).
    pub topic_prefix: String,
    /// Committed offset unchanged this long while lag > 0: STALLED.
    pub stall_after_secs: f64,
    /// No commit on any lagging partition for this long: STOPPED.
    pub stop_after_secs: f64,
    /// Polls over which lag growing while the group commits makes a WARNING.
    pub warning_window: usize,
}

impl Default for LagConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 2_000,
            discover: true,
            groups: Vec::new(),
            group_prefix: String::new(),
            topic_prefix: String::new(),
            stall_after_secs: 30.0,
            stop_after_secs: 120.0,
            warning_window: 10,
        }
    }
}
