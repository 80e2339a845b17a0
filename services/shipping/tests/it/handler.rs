//! The handlers inside a transaction against a fresh database: each command's effect and the
//! reply it leaves in the outbox (decoded through the real registry), every command twice.

use saga_consumer::Tx;
use saga_contracts::ids::{OrderId, Sku};
use saga_contracts::messages::order::{OrderApproved, OrderEvent, OrderRejected};
use saga_contracts::messages::shipping::{CancelShipment, ScheduleShipment, ShippingEvent};
use saga_contracts::{Address, Codec, Metadata, StockLine};
use saga_outbox::Outbox;
use shipping_service::handler::{CommandHandler, OrderEventHandler};
use shipping_service::shipments::ServedCountries;
use sqlx::PgPool;

use crate::support::fresh_pool;
use crate::support::registry_codec;

struct Ctx {
    pool: PgPool,
    commands: CommandHandler,
    events: OrderEventHandler,
    codec: Codec,
}

async fn ctx() -> Ctx {
    let codec = registry_codec().await;
    let outbox = Outbox::new(codec.clone());
    Ctx {
        pool: fresh_pool().await,
        commands: CommandHandler::new(outbox.clone(), ServedCountries::new(["DE"]).unwrap()),
        events: OrderEventHandler::new(outbox),
        codec,
    }
}

fn schedule_cmd(order: OrderId, country: &str) -> ScheduleShipment {
    ScheduleShipment {
        meta: Metadata::first(order),
        address: Address {
            name: "N".into(),
            line1: "L".into(),
            line2: Some("2".into()),
            city: "C".into(),
            postal_code: "P".into(),
            country: country.into(),
        },
        lines: vec![StockLine {
            sku: Sku::parse("A").unwrap(),
            quantity: 1,
        }],
    }
}

impl Ctx {
    async fn schedule(&self, order: OrderId, country: &str) {
        let mut tx = self.pool.begin().await.unwrap();
        self.commands
            .schedule(&mut Tx::direct(&mut tx), &schedule_cmd(order, country))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    async fn cancel(&self, order: OrderId) {
        let cmd = CancelShipment {
            meta: Metadata::first(order),
        };
        let mut tx = self.pool.begin().await.unwrap();
        self.commands
            .cancel(&mut Tx::direct(&mut tx), &cmd)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    async fn approve(&self, order: OrderId) {
        let event = OrderApproved {
            meta: Metadata::first(order),
        };
        let mut tx = self.pool.begin().await.unwrap();
        self.events
            .approved(&mut Tx::direct(&mut tx), &event)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Every reply in the outbox, in order, as a short string.
    async fn replies(&self) -> Vec<String> {
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT topic, payload FROM outbox ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let mut out = Vec::new();
        for (topic, payload) in rows {
            assert_eq!(topic, "shipping.events");
            let event: ShippingEvent = self.codec.decode(&payload).await.unwrap();
            out.push(match event {
                ShippingEvent::ShipmentScheduled(s) => format!("scheduled:{}", s.shipment_id),
                ShippingEvent::ShipmentRefused(_) => "refused".to_owned(),
                ShippingEvent::ShipmentCancelled(c) => format!("cancelled:{}", c.cancelled),
                ShippingEvent::ShipmentDispatched(d) => format!("dispatched:{}", d.shipment_id),
            });
        }
        out
    }
}

#[tokio::test]
async fn schedule_twice_books_once_and_approval_dispatches_once() {
    let c = ctx().await;
    let order = OrderId::new();
    c.schedule(order, "DE").await;
    c.schedule(order, "DE").await;
    c.approve(order).await;
    c.approve(order).await;

    let replies = c.replies().await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    let id = replies[0].trim_start_matches("scheduled:");
    assert_eq!(replies[1], replies[0]);
    assert_eq!(replies[2], format!("dispatched:{id}"));
}

#[tokio::test]
async fn refusal_cancel_twice_and_cancel_without_schedule() {
    let c = ctx().await;
    c.schedule(OrderId::new(), "FR").await;
    let order = OrderId::new();
    c.schedule(order, "DE").await;
    c.cancel(order).await;
    c.cancel(order).await;
    c.approve(order).await; // a cancelled shipment is never dispatched
    let never = OrderId::new();
    c.cancel(never).await;
    c.schedule(never, "DE").await;

    let replies = c.replies().await;
    // Shipment ids differ per order; the sequence of outcomes is what matters here.
    let shape: Vec<&str> = replies
        .iter()
        .map(|r| {
            if r.starts_with("scheduled:") {
                "scheduled"
            } else {
                r
            }
        })
        .collect();
    assert_eq!(
        shape,
        [
            "refused",
            "scheduled",
            "cancelled:true",
            "cancelled:true",
            "cancelled:false",
            "refused"
        ]
    );
}

#[tokio::test]
async fn other_order_events_are_ignored() {
    let c = ctx().await;
    let order = OrderId::new();
    c.schedule(order, "DE").await;
    let rejected = saga_consumer::Incoming {
        message: OrderEvent::OrderRejected(OrderRejected {
            meta: Metadata::first(order),
            reason: "no".into(),
        }),
        topic: "order.events".into(),
        partition: 0,
        offset: 0,
        headers: Default::default(),
    };
    let mut tx = c.pool.begin().await.unwrap();
    saga_consumer::Handler::handle(&c.events, &mut Tx::direct(&mut tx), &rejected)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(c.replies().await.len(), 1, "only the scheduling reply");
}
