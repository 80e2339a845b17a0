//! The rdkafka context: tracks which partitions this instance owns (so a worker stops
//! working on a partition that was revoked), commits stored offsets when partitions are
//! revoked, and exports consumer lag from librdkafka's statistics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

#[derive(Clone, Default)]
pub(crate) struct Assignment(Arc<Mutex<HashSet<i32>>>);

impl Assignment {
    pub(crate) fn contains(&self, partition: i32) -> bool {
        self.0.lock().expect("assignment lock").contains(&partition)
    }
    pub(crate) fn set(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut owned = self.0.lock().expect("assignment lock");
        owned.extend(partitions);
    }
    fn remove(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut owned = self.0.lock().expect("assignment lock");
        for p in partitions {
            owned.remove(&p);
        }
    }
}

pub(crate) struct RuntimeContext {
    pub(crate) group: String,
    pub(crate) assignment: Assignment,
}

impl ClientContext for RuntimeContext {
    /// Lag per partition as librdkafka sees it (high watermark minus position), exported as
    /// the `kafka_consumer_lag` gauge: the key health metric of an event-driven system.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if p.partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "kafka_consumer_lag",
                    "group" => self.group.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(group = %self.group, ?revoked, "partitions revoked");
            self.assignment.remove(revoked);
            // Hand over cleanly: what we stored is committed before the next owner fetches.
            // Work still in flight for these partitions commits its effects; its offsets can
            // no longer be stored, so the next owner redelivers it and its inbox skips it.
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(%error, "no offsets to commit on revoke");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(group = %self.group, ?assigned, "partitions assigned");
            self.assignment.set(assigned);
        }
    }
}
