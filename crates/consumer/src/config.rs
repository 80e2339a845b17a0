use serde::Deserialize;

/// How a consumer gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// `subscribe()`: the group coordinator shares partitions among instances. Use this to
    /// run several instances of a service (and on a real Kafka cluster).
    Group,
    /// `assign()` every partition and resume from the group's committed offsets. For one
    /// instance per service on tansu, whose group coordinator does not evict a member that
    /// was killed (see STACK-FACTS): a restarted instance resumes at once instead of waiting
    /// for a rebalance that never comes.
    Assign,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Consumer group (also the inbox's namespace).
    pub group_id: String,
    pub membership: Membership,
    /// Most messages of one partition applied in one transaction.
    pub max_batch: usize,
    /// Attempts for a transient handler failure before the message is dead-lettered.
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub dead_letter_topic: String,
    /// On shutdown, how long in-flight batches may take to finish.
    pub shutdown_grace_ms: u64,
    /// Messages buffered per partition between the fetch loop and its worker.
    pub partition_buffer: usize,
    /// Under load (the previous batch of the partition had more than one message), wait up
    /// to this long for more messages before opening the batch's transaction: fewer, bigger
    /// transactions for a few ms of latency. A lone message is never held back. 0: off.
    pub linger_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group_id: String::new(),
            membership: Membership::Group,
            max_batch: 200,
            max_attempts: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            dead_letter_topic: saga_kafka::topics::DEAD_LETTERS.to_owned(),
            shutdown_grace_ms: 10_000,
            partition_buffer: 2_000,
            linger_ms: 5,
        }
    }
}

impl ConsumerConfig {
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            ..Self::default()
        }
    }
}
