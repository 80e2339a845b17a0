//! Client settings, with defaults that suit Kafka and the local stack's patched tansu broker
//! alike (crates/stack/tansu/README.md).

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde::Deserialize;

use crate::KafkaError;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Upper bound on how long a fetch waits for data. The broker answers as soon as data
    /// arrives, so this is not a latency floor; it sets how often an idle consumer polls.
    pub fetch_wait_max_ms: u32,
    /// How long the producer waits to fill a batch. Small: the outbox relay already batches.
    pub linger_ms: u32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// How long the producer retries one message before reporting failure.
    pub message_timeout_ms: u32,
    /// Publish consumer statistics (lag per partition) this often; 0 disables.
    pub statistics_interval_ms: u32,
    /// Prepended to every topic name on the wire (empty in production). Lets several
    /// copies of the suite share one broker, e.g. parallel end-to-end tests.
    pub topic_prefix: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:19092".into(),
            fetch_wait_max_ms: 1000,
            linger_ms: 2,
            compression: "none".into(),
            message_timeout_ms: 30_000,
            statistics_interval_ms: 5_000,
            topic_prefix: String::new(),
        }
    }
}

impl KafkaConfig {
    /// The topic name on the wire for a logical topic name of the contracts.
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.topic_prefix)
    }

    /// Settings shared by every client.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            // librdkafka logs to tracing through rdkafka's `log` bridge; keep it quiet.
            .set("log_level", "4");
        config
    }

    /// The idempotent producer: `acks=all` so a write survives a broker failover,
    /// idempotence so retries neither duplicate nor reorder within a partition.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", self.linger_ms.to_string())
            .set("compression.type", &self.compression)
            .set("message.timeout.ms", self.message_timeout_ms.to_string());
        config
    }

    pub fn producer(&self) -> Result<FutureProducer, KafkaError> {
        Ok(self.producer_config().create()?)
    }

    /// Consumer settings for at-least-once processing: offsets are stored by the
    /// application only after the effect committed (`enable.auto.offset.store=false`) and
    /// committed in the background from what was stored, so a crash can only redeliver.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        if self.statistics_interval_ms > 0 {
            config.set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            );
        }
        config
    }
}
