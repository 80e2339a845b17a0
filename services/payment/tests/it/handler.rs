//! The handler inside a transaction against a fresh database: each command's effect and the
//! reply it leaves in the outbox (decoded through the real registry), every command twice.

use payment_service::handler::PaymentHandler;
use payment_service::payments;
use saga_consumer::Tx;
use saga_contracts::ids::OrderId;
use saga_contracts::messages::payment::{
    ChargePayment, DeclineReason, PaymentEvent, RefundPayment,
};
use saga_contracts::{Codec, Currency, Metadata, Money};
use saga_outbox::Outbox;
use sqlx::PgPool;

use crate::support::registry_codec;
use crate::support::{customer, fresh_pool};

struct Ctx {
    pool: PgPool,
    handler: PaymentHandler,
    codec: Codec,
}

fn eur(m: i64) -> Money {
    Money::new(m, Currency::EUR)
}

async fn ctx() -> Ctx {
    let codec = registry_codec().await;
    let pool = fresh_pool().await;
    let mut tx = pool.begin().await.unwrap();
    payments::set_credit(&mut tx, &customer("alice"), &eur(10_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Ctx {
        handler: PaymentHandler::new(Outbox::new(codec.clone())),
        codec,
        pool,
    }
}

impl Ctx {
    async fn charge(&self, order: OrderId, who: &str, amount: Money) -> ChargePayment {
        let cmd = ChargePayment {
            meta: Metadata::first(order),
            customer_id: customer(who),
            amount,
        };
        let mut tx = self.pool.begin().await.unwrap();
        self.handler
            .charge(&mut Tx::direct(&mut tx), &cmd)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        cmd
    }

    async fn refund(&self, order: OrderId) {
        let cmd = RefundPayment {
            meta: Metadata::first(order),
        };
        let mut tx = self.pool.begin().await.unwrap();
        self.handler
            .refund(&mut Tx::direct(&mut tx), &cmd)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    async fn replies(&self) -> Vec<PaymentEvent> {
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT topic, payload FROM outbox ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let mut out = Vec::new();
        for (topic, payload) in rows {
            assert_eq!(topic, "payment.events");
            out.push(self.codec.decode(&payload).await.unwrap());
        }
        out
    }

    async fn balance(&self) -> (i64, i64) {
        let mut conn = self.pool.acquire().await.unwrap();
        let a = payments::account(&mut conn, &customer("alice"))
            .await
            .unwrap()
            .unwrap();
        (a.credit.amount_minor, a.charged.amount_minor)
    }
}

#[tokio::test]
async fn charge_twice_replies_charged_twice_and_charges_once() {
    let c = ctx().await;
    let order = OrderId::new();
    let first = c.charge(order, "alice", eur(2_500)).await;
    let second = c.charge(order, "alice", eur(2_500)).await;

    let replies = c.replies().await;
    let [
        PaymentEvent::PaymentCharged(a),
        PaymentEvent::PaymentCharged(b),
    ] = &replies[..]
    else {
        panic!("{replies:?}");
    };
    assert_eq!(a.payment_id, b.payment_id);
    assert_eq!(a.amount, eur(2_500));
    assert_eq!(a.meta.causation_id, Some(first.meta.message_id));
    assert_eq!(b.meta.causation_id, Some(second.meta.message_id));
    assert_eq!(c.balance().await, (7_500, 2_500));
}

#[tokio::test]
async fn declines_carry_the_reason() {
    let c = ctx().await;
    c.charge(OrderId::new(), "nobody", eur(1)).await;
    c.charge(OrderId::new(), "alice", eur(10_001)).await;
    c.charge(OrderId::new(), "alice", Money::new(1, Currency::USD))
        .await;
    let reasons: Vec<DeclineReason> = c
        .replies()
        .await
        .into_iter()
        .map(|e| match e {
            PaymentEvent::PaymentDeclined(d) => d.reason,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            DeclineReason::UnknownAccount,
            DeclineReason::InsufficientCredit,
            DeclineReason::CurrencyMismatch
        ]
    );
    assert_eq!(c.balance().await, (10_000, 0));
}

#[tokio::test]
async fn refund_twice_refunds_once_and_refund_without_charge_replies_zero() {
    let c = ctx().await;
    let order = OrderId::new();
    c.charge(order, "alice", eur(900)).await;
    c.refund(order).await;
    c.refund(order).await;
    let never = OrderId::new();
    c.refund(never).await;

    let amounts: Vec<i64> = c
        .replies()
        .await
        .into_iter()
        .filter_map(|e| match e {
            PaymentEvent::PaymentRefunded(r) => Some(r.amount.amount_minor),
            _ => None,
        })
        .collect();
    assert_eq!(amounts, [900, 900, 0]);
    assert_eq!(c.balance().await, (10_000, 0));
}

#[tokio::test]
async fn a_refund_that_would_overflow_the_balance_is_refused_with_a_reply() {
    let c = ctx().await;
    let order = OrderId::new();
    c.charge(order, "alice", eur(1_000)).await;
    // An admin raises the credit to the i64 maximum meanwhile: adding the refund back would
    // overflow (SQLSTATE 22003). Refused with a reply, nothing changed.
    let mut tx = c.pool.begin().await.unwrap();
    payments::set_credit(&mut tx, &customer("alice"), &eur(i64::MAX))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let before = c.balance().await;
    c.refund(order).await;
    let replies = c.replies().await;
    let Some(PaymentEvent::PaymentCommandRefused(r)) = replies.last() else {
        panic!("expected PaymentCommandRefused last, got {replies:?}")
    };
    assert_eq!(r.command, "RefundPayment");
    assert_eq!(c.balance().await, before);
}
