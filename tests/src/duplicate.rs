//! A second publisher that republishes every delivered outbox row of every service once
//! more, byte for byte (same key, payload and headers, so the same message id), while the
//! suite runs: every consumer sees every message twice, as after a relay that crashed between
//! the broker's acknowledgement and marking its batch delivered.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_kafka::headers::{HeaderMap, to_kafka_headers};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Service, Suite};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    topic: String,
    message_key: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<HeaderMap>,
}

pub struct Duplicator {
    token: CancellationToken,
    handle: JoinHandle<HashMap<Service, HashSet<i64>>>,
    pools: Vec<(Service, PgPool)>,
}

impl Duplicator {
    pub(crate) fn start(suite: &Suite) -> Duplicator {
        let pools: Vec<(Service, PgPool)> = Service::ALL
            .iter()
            .map(|s| (*s, suite.pool(*s).clone()))
            .collect();
        let producer: FutureProducer = suite.kafka.producer().expect("duplicate producer");
        let prefix = suite.prefix.clone();
        let token = CancellationToken::new();
        let stop = token.clone();
        let task_pools = pools.clone();
        let handle = tokio::spawn(async move {
            let mut done: HashMap<Service, HashSet<i64>> = HashMap::new();
            loop {
                // One more round after the stop request, so rows delivered just before it are
                // duplicated too.
                let stopping = stop.is_cancelled();
                for (service, pool) in &task_pools {
                    let seen = done.entry(*service).or_default();
                    let ids: Vec<i64> = seen.iter().copied().collect();
                    let rows: Vec<Row> = sqlx::query_as(
                        "SELECT id, topic, message_key, payload, headers FROM outbox
                         WHERE delivered_at IS NOT NULL AND NOT (id = ANY($1)) ORDER BY id",
                    )
                    .bind(&ids)
                    .fetch_all(pool)
                    .await
                    .expect("read delivered outbox rows");
                    for row in rows {
                        let topic = format!("{prefix}{}", row.topic);
                        producer
                            .send(
                                FutureRecord::to(&topic)
                                    .key(&row.message_key)
                                    .payload(&row.payload)
                                    .headers(to_kafka_headers(&row.headers)),
                                Duration::from_secs(10),
                            )
                            .await
                            .map_err(|(e, _)| e)
                            .expect("republish an outbox row");
                        seen.insert(row.id);
                    }
                }
                if stopping {
                    return done;
                }
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        Duplicator {
            token,
            handle,
            pools,
        }
    }

    /// Stops after a last round; returns how many rows were republished per service and
    /// checks that this is every outbox row there is (nothing escaped duplication).
    pub async fn stop(self) -> HashMap<Service, usize> {
        self.token.cancel();
        let done = self.handle.await.expect("duplicator task");
        let mut counts = HashMap::new();
        for (service, pool) in &self.pools {
            let total: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(pool)
                .await
                .expect("count outbox rows");
            let duplicated = done.get(service).map_or(0, HashSet::len);
            assert_eq!(
                duplicated as i64, total,
                "{service:?}: every outbox row is republished"
            );
            counts.insert(*service, duplicated);
        }
        counts
    }
}
