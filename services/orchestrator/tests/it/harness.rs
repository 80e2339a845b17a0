//! Test harness: a fresh database per test, the real registry, an App with the parts the test
//! needs, helpers that feed replies through the runner in one transaction each (as the
//! consumer runtime does) and read the outbox.

use std::sync::OnceLock;

use orchestrator_service::store::{self, SagaRow, TransitionRow};
use orchestrator_service::{App, Config, Handled, SagaConfig, SagaRunner};
use saga_contracts::{
    Address, Codec, Currency, CustomerId, InventoryCommand, InventoryEvent, Metadata, Money,
    OrderApproved, OrderCommand, OrderEvent, OrderId, OrderLine, OrderPlaced, OrderRejected,
    PaymentCharged, PaymentCommand, PaymentDeclined, PaymentEvent, PaymentId, PaymentRefunded,
    ReservationId, ShipmentId, ShipmentRefused, ShipmentScheduled, ShippingCommand, ShippingEvent,
    Sku, StockReleased, StockReserved, TopicMessage,
};
use saga_service_kit::app::{Components, RegistryConfig};
use saga_service_kit::config::{DatabaseConfig, HttpConfig};
use saga_testkit::TestStack;
use sqlx::PgPool;

/// The registry of the test stack, or one started in this process (on its own thread and
/// runtime, so it outlives every test's runtime) on a fresh database.
pub async fn registry_url() -> String {
    let stack = TestStack::get().await;
    if let Some(url) = stack.registry_url() {
        return url.to_owned();
    }
    static URL: OnceLock<String> = OnceLock::new();
    if let Some(url) = URL.get() {
        return url.clone();
    }
    let db = stack.fresh_database().await;
    let db_url = db.url.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let auth = schema_registry::auth::AuthConfig::with_password("orchestrator-test-registry");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("registry runtime");
        rt.block_on(async move {
            let app = schema_registry::App::build(schema_registry::Config {
                http: HttpConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                },
                database: DatabaseConfig::new(db_url),
                auth: auth.clone(),
            })
            .await
            .expect("start the schema registry");
            let _ = tx.send(auth.url_with_credentials(&format!("http://{}", app.local_addr())));
            app.run(tokio_util::sync::CancellationToken::new())
                .await
                .expect("schema registry runs");
        });
    });
    let url = rx.await.expect("registry started");
    URL.get_or_init(|| url).clone()
}

/// The admin token of the orchestrator under test (its operator actions are admin routes).
pub const ADMIN_TOKEN: &str = "orchestrator-test-admin-token";

pub fn config(db_url: &str, registry: &str, saga: SagaConfig, components: Components) -> Config {
    Config {
        runtime: saga_runtime::RuntimeConfig {
            http: HttpConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            database: DatabaseConfig::new(db_url),
            kafka: Default::default(),
            registry: RegistryConfig::new(registry),
            consumer: Default::default(),
            relay: Default::default(),
            components,
            auth: saga_service_kit::auth::AuthConfig::with_admin_token(ADMIN_TOKEN),
            retention: Default::default(),
        },
        saga,
    }
}

/// No consumers, no relay: the test feeds messages and reads the outbox itself.
pub const DB_ONLY: Components = Components {
    http: true,
    consumer: false,
    relay: false,
};

pub struct Harness {
    pub app: App,
    pub pool: PgPool,
    pub codec: Codec,
    db_url: String,
    registry: String,
    saga: SagaConfig,
}

impl Harness {
    pub async fn new(saga: SagaConfig) -> Harness {
        let registry = registry_url().await;
        let db = TestStack::get().await.fresh_database().await;
        Self::on(db.url.clone(), registry, saga).await
    }

    async fn on(db_url: String, registry: String, saga: SagaConfig) -> Harness {
        let app = App::build(config(&db_url, &registry, saga.clone(), DB_ONLY))
            .await
            .expect("build the orchestrator");
        let pool = app.pool().clone();
        Harness {
            app,
            pool,
            codec: Codec::new(&registry),
            db_url,
            registry,
            saga,
        }
    }

    /// A new App on the same database: what a restarted process would see.
    pub async fn restart(self) -> Harness {
        let Harness {
            app,
            pool,
            db_url,
            registry,
            saga,
            ..
        } = self;
        drop(app);
        pool.close().await;
        Self::on(db_url, registry, saga).await
    }

    /// Another App on the same database: a second orchestrator instance.
    pub async fn second_instance(&self) -> Harness {
        Self::on(
            self.db_url.clone(),
            self.registry.clone(),
            self.saga.clone(),
        )
        .await
    }

    /// Serve the public and admin routes on a port of their own (the App's own listener is
    /// consumed by `run`); returns the base URL. The server lives until the test ends.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = orchestrator_service::http::router(self.pool.clone())
            .merge(orchestrator_service::http::admin_routes(
                self.pool.clone(),
                self.runner().clone(),
            ))
            .fallback(saga_service_kit::problem::not_found);
        tokio::spawn(saga_service_kit::http::serve(
            listener,
            router,
            tokio_util::sync::CancellationToken::new(),
        ));
        base
    }

    pub fn runner(&self) -> &SagaRunner {
        self.app.runner()
    }

    /// Handle one input in its own transaction, like the consumer runtime: commands are
    /// staged and written just before the commit.
    async fn handle<F>(&self, f: F) -> Handled
    where
        F: AsyncFnOnce(&SagaRunner, &mut saga_outbox::Tx<'_>) -> Handled,
    {
        let mut tx = self.pool.begin().await.unwrap();
        let mut staged = saga_outbox::Tx::staged(&mut tx);
        let handled = f(self.runner(), &mut staged).await;
        staged.flush().await.unwrap();
        tx.commit().await.unwrap();
        handled
    }

    pub async fn order_event(&self, ev: OrderEvent) -> Handled {
        use orchestrator_service::sagas::order_saga::{OrderEventInput, from_order_event};
        self.handle(async |r, tx| match from_order_event(&ev) {
            OrderEventInput::Placed(p) => r.start(tx, &p).await.unwrap(),
            OrderEventInput::Reply(reply) => r.on_reply(tx, &reply).await.unwrap(),
        })
        .await
    }

    pub async fn inventory_event(&self, ev: InventoryEvent) -> Handled {
        let reply = orchestrator_service::sagas::order_saga::from_inventory_event(&ev);
        self.handle(async |r, tx| r.on_reply(tx, &reply).await.unwrap())
            .await
    }

    pub async fn payment_event(&self, ev: PaymentEvent) -> Handled {
        let reply = orchestrator_service::sagas::order_saga::from_payment_event(&ev);
        self.handle(async |r, tx| r.on_reply(tx, &reply).await.unwrap())
            .await
    }

    pub async fn shipping_event(&self, ev: ShippingEvent) -> Handled {
        let reply = orchestrator_service::sagas::order_saga::from_shipping_event(&ev).unwrap();
        self.handle(async |r, tx| r.on_reply(tx, &reply).await.unwrap())
            .await
    }

    pub async fn retry_due(&self) -> usize {
        self.runner().retry_due_once(&self.pool).await.unwrap()
    }

    pub async fn outbox(&self) -> Vec<OutboxRow> {
        sqlx::query_as::<_, OutboxRow>(
            "SELECT topic, message_type, payload FROM outbox ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn last_command_row(&self) -> OutboxRow {
        self.outbox().await.pop().expect("a command in the outbox")
    }

    /// Metadata of the last command enqueued, whatever its type.
    pub async fn last_command(&self) -> Metadata {
        let row = self.last_command_row().await;
        match row.topic.as_str() {
            "inventory.commands" => self.decode::<InventoryCommand>(&row).await.meta().clone(),
            "payment.commands" => self.decode::<PaymentCommand>(&row).await.meta().clone(),
            "shipping.commands" => self.decode::<ShippingCommand>(&row).await.meta().clone(),
            "order.commands" => self.decode::<OrderCommand>(&row).await.meta().clone(),
            other => panic!("unexpected topic {other}"),
        }
    }

    pub async fn decode<T: TopicMessage>(&self, row: &OutboxRow) -> T {
        self.codec.decode::<T>(&row.payload).await.unwrap()
    }

    pub async fn saga(&self, order_id: OrderId) -> SagaRow {
        store::find(&self.pool, order_id.into_uuid())
            .await
            .unwrap()
            .expect("a saga for the order")
    }

    pub async fn timeline(&self, saga_id: uuid::Uuid) -> Vec<TransitionRow> {
        store::timeline(&self.pool, saga_id).await.unwrap()
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub topic: String,
    pub message_type: String,
    pub payload: Vec<u8>,
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

pub fn order_placed() -> OrderPlaced {
    OrderPlaced {
        meta: Metadata::first(OrderId::new()),
        customer_id: CustomerId::parse("alice").unwrap(),
        lines: vec![
            OrderLine {
                sku: Sku::parse("SKU-1").unwrap(),
                quantity: 2,
                unit_price: eur(1250),
            },
            OrderLine {
                sku: Sku::parse("SKU-2").unwrap(),
                quantity: 1,
                unit_price: eur(500),
            },
        ],
        total: eur(3000),
        shipping_address: Address {
            name: "Alice".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: "FR".into(),
        },
    }
}

/// Replies as a participant would send them: caused by the command.
pub fn stock_reserved(cmd: &Metadata) -> StockReserved {
    StockReserved {
        meta: Metadata::caused_by(cmd),
        reservation_id: ReservationId::new(),
    }
}

pub fn stock_released(cmd: &Metadata) -> StockReleased {
    StockReleased {
        meta: Metadata::caused_by(cmd),
        released: true,
    }
}

pub fn payment_charged(cmd: &Metadata, amount: Money) -> PaymentCharged {
    PaymentCharged {
        meta: Metadata::caused_by(cmd),
        payment_id: PaymentId::new(),
        amount,
    }
}

pub fn payment_declined(cmd: &Metadata) -> PaymentDeclined {
    PaymentDeclined {
        meta: Metadata::caused_by(cmd),
        reason: saga_contracts::DeclineReason::InsufficientCredit,
        detail: "limit reached".into(),
    }
}

pub fn payment_refunded(cmd: &Metadata, amount: Money) -> PaymentRefunded {
    PaymentRefunded {
        meta: Metadata::caused_by(cmd),
        amount,
    }
}

pub fn shipment_scheduled(cmd: &Metadata) -> ShipmentScheduled {
    ShipmentScheduled {
        meta: Metadata::caused_by(cmd),
        shipment_id: ShipmentId::new(),
    }
}

pub fn shipment_refused(cmd: &Metadata, reason: &str) -> ShipmentRefused {
    ShipmentRefused {
        meta: Metadata::caused_by(cmd),
        reason: reason.into(),
    }
}

pub fn order_approved(cmd: &Metadata) -> OrderApproved {
    OrderApproved {
        meta: Metadata::caused_by(cmd),
    }
}

pub fn order_rejected(cmd: &Metadata, reason: &str) -> OrderRejected {
    OrderRejected {
        meta: Metadata::caused_by(cmd),
        reason: reason.into(),
    }
}
