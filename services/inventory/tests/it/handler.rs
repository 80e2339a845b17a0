//! The handler inside a transaction against a fresh database: each command's effect and the
//! reply it leaves in the outbox (decoded through the real registry), every command twice.

use inventory_service::handler::InventoryHandler;
use inventory_service::stock;
use saga_consumer::HandlerError;
use saga_consumer::Tx;
use saga_contracts::ids::OrderId;
use saga_contracts::messages::inventory::{InventoryEvent, ReleaseStock, ReserveStock};
use saga_contracts::{Codec, Metadata, StockLine};
use saga_outbox::Outbox;
use sqlx::PgPool;

use crate::support::registry_codec;
use crate::support::{fresh_pool, sku};

struct Ctx {
    pool: PgPool,
    handler: InventoryHandler,
    codec: Codec,
}

async fn ctx() -> Ctx {
    let codec = registry_codec().await;
    let pool = fresh_pool().await;
    let mut conn = pool.acquire().await.unwrap();
    stock::set_stock(&mut conn, &sku("A"), 10).await.unwrap();
    Ctx {
        handler: InventoryHandler::new(Outbox::new(codec.clone())),
        codec,
        pool,
    }
}

impl Ctx {
    async fn reserve(&self, cmd: &ReserveStock) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await.unwrap();
        self.handler.reserve(&mut Tx::direct(&mut tx), cmd).await?;
        tx.commit().await.unwrap();
        Ok(())
    }

    async fn release(&self, cmd: &ReleaseStock) {
        let mut tx = self.pool.begin().await.unwrap();
        self.handler
            .release(&mut Tx::direct(&mut tx), cmd)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Every reply in the outbox, in order, decoded.
    async fn replies(&self) -> Vec<InventoryEvent> {
        let rows: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT topic, message_key, payload FROM outbox ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let mut out = Vec::new();
        for (topic, key, payload) in rows {
            assert_eq!(topic, "inventory.events");
            let event: InventoryEvent = self.codec.decode(&payload).await.unwrap();
            assert_eq!(key, event_meta(&event).order_id.to_string());
            out.push(event);
        }
        out
    }
}

fn event_meta(e: &InventoryEvent) -> &Metadata {
    saga_contracts::TopicMessage::meta(e)
}

fn reserve_cmd(order: OrderId, quantity: i32) -> ReserveStock {
    ReserveStock {
        meta: Metadata::first(order),
        lines: vec![StockLine {
            sku: sku("A"),
            quantity,
        }],
    }
}

#[tokio::test]
async fn reserve_twice_replies_reserved_twice_with_one_reservation() {
    let c = ctx().await;
    let order = OrderId::new();
    let first = reserve_cmd(order, 4);
    let second = reserve_cmd(order, 4); // a new message id: the inbox would not catch it

    c.reserve(&first).await.unwrap();
    c.reserve(&second).await.unwrap();

    let replies = c.replies().await;
    let [
        InventoryEvent::StockReserved(a),
        InventoryEvent::StockReserved(b),
    ] = &replies[..]
    else {
        panic!("{replies:?}");
    };
    assert_eq!(a.reservation_id, b.reservation_id);
    assert_eq!(a.meta.causation_id, Some(first.meta.message_id));
    assert_eq!(b.meta.causation_id, Some(second.meta.message_id));
    assert_eq!(a.meta.correlation_id, first.meta.correlation_id);
    let mut conn = c.pool.acquire().await.unwrap();
    let level = stock::stock_level(&mut conn, &sku("A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((level.available, level.reserved), (6, 4));
}

#[tokio::test]
async fn shortage_replies_unavailable_naming_the_sku() {
    let c = ctx().await;
    c.reserve(&reserve_cmd(OrderId::new(), 11)).await.unwrap();
    let replies = c.replies().await;
    let [InventoryEvent::StockUnavailable(u)] = &replies[..] else {
        panic!("{replies:?}");
    };
    assert_eq!(u.shortages.len(), 1);
    assert_eq!(
        (u.shortages[0].requested, u.shortages[0].available),
        (11, 10)
    );
}

#[tokio::test]
async fn release_twice_replies_released_twice_and_release_without_reserve_replies_false() {
    let c = ctx().await;
    let order = OrderId::new();
    c.reserve(&reserve_cmd(order, 4)).await.unwrap();
    c.release(&ReleaseStock {
        meta: Metadata::first(order),
    })
    .await;
    c.release(&ReleaseStock {
        meta: Metadata::first(order),
    })
    .await;
    let never = OrderId::new();
    c.release(&ReleaseStock {
        meta: Metadata::first(never),
    })
    .await;
    c.reserve(&reserve_cmd(never, 1)).await.unwrap();

    let released: Vec<String> = c
        .replies()
        .await
        .iter()
        .map(|e| match e {
            InventoryEvent::StockReserved(_) => "reserved".to_owned(),
            InventoryEvent::StockReleased(r) => format!("released:{}", r.released),
            InventoryEvent::StockUnavailable(u) => format!("unavailable:{}", u.shortages.len()),
            InventoryEvent::InventoryCommandRefused(r) => format!("refused:{}", r.command),
        })
        .collect();
    assert_eq!(
        released,
        [
            "reserved",
            "released:true",
            "released:true",
            "released:false",
            "unavailable:0"
        ]
    );
}

#[tokio::test]
async fn an_invalid_quantity_is_refused_with_a_reply_and_leaves_nothing() {
    let c = ctx().await;
    let order = OrderId::new();
    c.reserve(&reserve_cmd(order, -1)).await.unwrap();
    let replies = c.replies().await;
    let [InventoryEvent::InventoryCommandRefused(r)] = replies.as_slice() else {
        panic!("expected one InventoryCommandRefused, got {replies:?}")
    };
    assert_eq!(r.command, "ReserveStock");
    assert!(r.reason.contains("quantity"), "{}", r.reason);
    assert_eq!(r.meta.order_id, order);
    let mut conn = c.pool.acquire().await.unwrap();
    let level = stock::stock_level(&mut conn, &sku("A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((level.available, level.reserved), (10, 0));
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&c.pool)
        .await
        .unwrap();
    assert_eq!(claimed, 0, "a refused command claims nothing");
}

#[tokio::test]
async fn a_release_that_would_overflow_the_stock_is_refused_with_a_reply() {
    let c = ctx().await;
    let order = OrderId::new();
    c.reserve(&reserve_cmd(order, 5)).await.unwrap();
    // An admin sets the available stock to the int4 maximum meanwhile: giving 5 back would
    // overflow (SQLSTATE 22003). Refused with a reply, nothing changed.
    let mut conn = c.pool.acquire().await.unwrap();
    stock::set_stock(&mut conn, &sku("A"), i32::MAX)
        .await
        .unwrap();
    c.release(&ReleaseStock {
        meta: Metadata::first(order),
    })
    .await;
    let replies = c.replies().await;
    let Some(InventoryEvent::InventoryCommandRefused(r)) = replies.last() else {
        panic!("expected InventoryCommandRefused last, got {replies:?}")
    };
    assert_eq!(r.command, "ReleaseStock");
    let level = stock::stock_level(&mut conn, &sku("A"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((level.available, level.reserved), (i32::MAX, 5));
}
