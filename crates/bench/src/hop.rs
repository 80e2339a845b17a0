//! The broker's own hop: a plain rdkafka producer -> consumer with the suite's client
//! settings (idempotent `acks=all` producer, the configured `fetch.wait.max.ms`), no
//! database and no codec. What the pipeline costs above this is ours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use saga_kafka::KafkaConfig;
use tokio_util::sync::CancellationToken;

use crate::stats::Samples;

/// A probe topic with a consumer task recording send -> receive latency.
pub struct HopProbe {
    topic: String,
    producer: FutureProducer,
    samples: Arc<Mutex<Samples>>,
    received: Arc<AtomicU64>,
    /// Send instants are carried in the payload as nanoseconds since `epoch`.
    epoch: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl HopProbe {
    /// Creates `topic` (logical name, prefixed by `kafka`) and starts consuming it from the
    /// beginning until `shutdown`.
    pub async fn start(
        kafka: &KafkaConfig,
        topic: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<HopProbe> {
        let topic = kafka.topic(topic);
        saga_kafka::admin::ensure_topics(kafka, &[(&topic, saga_kafka::DEFAULT_PARTITIONS)])
            .await?;
        let consumer: StreamConsumer = kafka
            .consumer_config(&format!("{topic}-probe"))
            .set("enable.auto.offset.store", "true")
            .create()?;
        // assign(), not subscribe(): no group join to wait for (see STACK-FACTS on tansu).
        let mut list = TopicPartitionList::new();
        for p in 0..saga_kafka::DEFAULT_PARTITIONS {
            list.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        let samples = Arc::new(Mutex::new(Samples::new()));
        let received = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let (s, r) = (samples.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = consumer.recv() => m,
                };
                let Ok(msg) = msg else { continue };
                let now = epoch.elapsed();
                let sent = msg
                    .payload()
                    .and_then(|p| p.get(..8))
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(|b| Duration::from_nanos(u64::from_be_bytes(b)));
                if let Some(sent) = sent {
                    s.lock()
                        .expect("samples lock")
                        .push(now.saturating_sub(sent));
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(HopProbe {
            topic,
            producer: kafka.producer()?,
            samples,
            received,
            epoch,
            task,
        })
    }

    /// Send one probe message (random key, 160 bytes: about an encoded command's size).
    pub fn send(&self) {
        let key = uuid::Uuid::new_v4().to_string();
        let mut payload = vec![0u8; 160];
        payload[..8].copy_from_slice(&(self.epoch.elapsed().as_nanos() as u64).to_be_bytes());
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        // The delivery report is not awaited: the receiving side is the measurement.
        drop(self.producer.send_result(record));
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The samples so far, and forget them.
    pub fn take(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().expect("samples lock"))
    }

    /// Wait until `count` probes arrived in total; fails when nothing arrives for `stall`.
    pub async fn wait_received(&self, count: u64, stall: Duration) -> anyhow::Result<()> {
        let mut last = self.received();
        while self.received() < count {
            let moved = saga_testkit::wait_until(stall, || async {
                self.received() != last || self.received() >= count
            })
            .await;
            if moved.is_err() {
                anyhow::bail!("broker hop probe stalled at {} of {count}", self.received());
            }
            last = self.received();
        }
        Ok(())
    }

    /// The broker alone at full speed: `n` probes sent at once (pipelined by the idempotent
    /// producer), messages per second from the first send to the last one received.
    pub async fn throughput(&self, n: u64) -> anyhow::Result<f64> {
        self.take();
        let start_count = self.received();
        let started = Instant::now();
        for _ in 0..n {
            self.send();
        }
        self.wait_received(start_count + n, Duration::from_secs(30))
            .await?;
        let rate = n as f64 / started.elapsed().as_secs_f64();
        self.take();
        Ok(rate)
    }

    /// `n` probes at `rate` per second, then wait for them; returns their samples.
    pub async fn measure(&self, n: u64, rate: u32) -> anyhow::Result<Samples> {
        self.take();
        let start_count = self.received();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        for _ in 0..n {
            ticker.tick().await;
            self.send();
        }
        self.wait_received(start_count + n, Duration::from_secs(30))
            .await?;
        Ok(self.take())
    }
}

impl Drop for HopProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
