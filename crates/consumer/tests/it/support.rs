//! Shared fixtures: a fresh database with the outbox, inbox and a test `effects` table, a
//! Kafka config with a unique topic prefix (so tests share one broker without seeing each
//! other's messages), and a handler whose effect is *not* naturally idempotent, so only the
//! inbox stands between a redelivery and a double effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use saga_consumer::{Consumer, ConsumerConfig, Handler, HandlerError, Incoming, Membership, Tx};
use saga_contracts::{Codec, InventoryCommand, Metadata, OrderId, ReserveStock, Sku, StockLine};
use saga_kafka::KafkaConfig;
use saga_outbox::{Outbox, Relay, RelayConfig};
use saga_testkit::{TestDb, TestStack, wait_until};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Env {
    pub db: TestDb,
    pub kafka: KafkaConfig,
    pub codec: Codec,
    pub outbox: Outbox,
}

pub async fn env() -> Env {
    let stack = TestStack::get().await;
    let db = stack.fresh_database().await;
    saga_service_kit::db::migrate(&db.pool, &[&saga_outbox::MIGRATOR, &saga_inbox::MIGRATOR])
        .await
        .expect("migrate outbox + inbox");
    sqlx::query(
        "CREATE TABLE effects (
            seq BIGSERIAL PRIMARY KEY,
            message_id UUID NOT NULL,
            order_id UUID NOT NULL,
            n INT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let kafka = KafkaConfig {
        bootstrap_servers: stack.kafka_bootstrap().to_owned(),
        fetch_wait_max_ms: saga_stack::SUITE_FETCH_WAIT_MS,
        topic_prefix: format!("t{}.", uuid::Uuid::new_v4().simple()),
        statistics_interval_ms: 0,
        ..KafkaConfig::default()
    };
    saga_kafka::admin::ensure_suite_topics(&kafka)
        .await
        .expect("create topics");
    let codec = Codec::new(
        stack
            .registry_url()
            .expect("these tests need the schema registry (run them with `cargo xtask test`)"),
    );
    let outbox = Outbox::new(codec.clone());
    Env {
        db,
        kafka,
        codec,
        outbox,
    }
}

/// The `n`-th message for `order`: a ReserveStock whose quantity carries `n`, so the
/// consumer can check order per key.
pub fn message(order: OrderId, n: i32) -> ReserveStock {
    ReserveStock {
        meta: Metadata::first(order),
        lines: vec![StockLine {
            sku: Sku::parse("SKU-1").unwrap(),
            quantity: n,
        }],
    }
}

/// Records every application. A quantity of -1 is a message the handler refuses
/// permanently; `fail_transiently` makes every call fail with a transient error;
/// `panic_once` makes the next call panic (a handler bug).
#[derive(Clone, Default)]
pub struct RecordingHandler {
    pub fail_transiently: Arc<AtomicBool>,
    pub panic_once: Arc<AtomicBool>,
}

impl Handler for RecordingHandler {
    type Message = InventoryCommand;

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<InventoryCommand>,
    ) -> Result<(), HandlerError> {
        let InventoryCommand::ReserveStock(cmd) = &msg.message else {
            return Err(HandlerError::Permanent("unexpected message".into()));
        };
        if self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("handler bug (injected by the test)");
        }
        if self.fail_transiently.load(Ordering::SeqCst) {
            return Err(HandlerError::Transient("told to fail".into()));
        }
        let n = cmd.lines[0].quantity;
        if n < 0 {
            return Err(HandlerError::Permanent(format!("quantity {n} is negative")));
        }
        sqlx::query("INSERT INTO effects (message_id, order_id, n) VALUES ($1, $2, $3)")
            .bind(cmd.meta.message_id.as_uuid())
            .bind(cmd.meta.order_id.as_uuid())
            .bind(n)
            .execute(tx.conn())
            .await?;
        Ok(())
    }
}

pub fn consumer_config(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        membership: Membership::Assign,
        backoff_initial_ms: 20,
        backoff_max_ms: 500,
        max_attempts: 3,
        ..ConsumerConfig::new(group)
    }
}

/// A consumer running on its own task until `token` is cancelled or the task aborted.
pub fn spawn_consumer(
    env: &Env,
    pool: PgPool,
    config: ConsumerConfig,
    handler: RecordingHandler,
    token: CancellationToken,
) -> JoinHandle<()> {
    let consumer =
        Consumer::new(&env.kafka, config, pool, env.codec.clone(), handler).expect("consumer");
    tokio::spawn(async move { consumer.run(token).await.expect("consumer run") })
}

pub fn relay(env: &Env, config: RelayConfig) -> Relay {
    Relay::new(env.db.pool.clone(), &env.kafka, config).expect("relay")
}

/// Enqueue `per_key` messages for each of `keys` orders, one transaction per message, keys
/// concurrently (each key's messages in sequence, as an aggregate's would be).
pub async fn enqueue(env: &Env, keys: usize, per_key: i32) -> Vec<OrderId> {
    let orders: Vec<OrderId> = (0..keys).map(|_| OrderId::new()).collect();
    let tasks = orders.iter().map(|order| {
        let pool = env.db.pool.clone();
        let outbox = env.outbox.clone();
        let order = *order;
        async move {
            for n in 1..=per_key {
                let mut tx = pool.begin().await.unwrap();
                outbox.send(&mut tx, &message(order, n)).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    });
    futures::future::join_all(tasks).await;
    orders
}

pub async fn count_effects(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Wait until `expected` effects exist. Fails when progress stalls for `DEADLINE` (not on
/// a fixed total time: on a loaded 2-core machine 10,000 messages may take a while, but
/// they must keep moving).
pub async fn wait_for_effects(pool: &PgPool, expected: i64) {
    let mut last = -1;
    loop {
        let result = wait_until(DEADLINE, || async {
            let now = count_effects(pool).await;
            now >= expected || now > last
        })
        .await;
        let now = count_effects(pool).await;
        assert!(
            result.is_ok(),
            "expected {expected} effects; stalled at {now} for {DEADLINE:?}"
        );
        if now >= expected {
            return;
        }
        last = now;
    }
}

/// Every message applied exactly once, and per key in the order it was sent.
pub async fn assert_each_once_in_order(pool: &PgPool, orders: &[OrderId], per_key: i32) {
    let duplicated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT message_id FROM effects GROUP BY message_id HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(duplicated, 0, "some effects were applied twice");
    for order in orders {
        let ns: Vec<i32> =
            sqlx::query_scalar("SELECT n FROM effects WHERE order_id = $1 ORDER BY seq")
                .bind(order.as_uuid())
                .fetch_all(pool)
                .await
                .unwrap();
        let expected: Vec<i32> = (1..=per_key).collect();
        assert_eq!(
            ns, expected,
            "order {order}: applied out of order or incompletely"
        );
    }
}

/// A TCP proxy in front of PostgreSQL that the test can cut: a database that becomes
/// unreachable (connections reset, new ones refused) and comes back.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            refused: Arc::default(),
            connections: Arc::default(),
        };
        let (up, refused, connections) = (
            proxy.up.clone(),
            proxy.refused.clone(),
            proxy.connections.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    /// Reset every connection and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Connection attempts refused while cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

/// The `host:port` of a postgres URL.
pub fn pg_socket(url: &str) -> std::net::SocketAddr {
    let host_port = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("postgres url with host");
    use std::net::ToSocketAddrs;
    host_port.to_socket_addrs().unwrap().next().unwrap()
}
