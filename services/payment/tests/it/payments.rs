//! The payment rules against a real Postgres: charge or decline, refund exactly once,
//! idempotent by order id, tombstones, and no overdraw under concurrency.

use payment_service::payments::{self, ChargeOutcome, Decline, PaymentError};
use saga_contracts::ids::{CustomerId, OrderId};
use saga_contracts::{Currency, Money};
use sqlx::PgPool;

use crate::support::{customer, fresh_pool};

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

async fn set_credit(pool: &PgPool, c: &CustomerId, credit: Money) {
    let mut tx = pool.begin().await.unwrap();
    payments::set_credit(&mut tx, c, &credit).await.unwrap();
    tx.commit().await.unwrap();
}

/// (credit, charged) in minor units.
async fn balance(pool: &PgPool, c: &CustomerId) -> (i64, i64) {
    let mut conn = pool.acquire().await.unwrap();
    let a = payments::account(&mut conn, c).await.unwrap().unwrap();
    (a.credit.amount_minor, a.charged.amount_minor)
}

async fn charge(pool: &PgPool, order: OrderId, c: &CustomerId, amount: Money) -> ChargeOutcome {
    let mut tx = pool.begin().await.unwrap();
    let outcome = payments::charge(&mut tx, order, c, &amount).await.unwrap();
    tx.commit().await.unwrap();
    outcome
}

async fn refund(pool: &PgPool, order: OrderId) -> Money {
    let mut tx = pool.begin().await.unwrap();
    let refunded = payments::refund(&mut tx, order).await.unwrap();
    tx.commit().await.unwrap();
    refunded
}

fn declined(outcome: &ChargeOutcome) -> Option<Decline> {
    match outcome {
        ChargeOutcome::Declined { reason, .. } => Some(*reason),
        ChargeOutcome::Charged { .. } => None,
    }
}

#[tokio::test]
async fn charges_the_amount_against_available_credit() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(10_000)).await;

    let outcome = charge(&pool, OrderId::new(), &alice, eur(2_550)).await;

    assert!(
        matches!(outcome, ChargeOutcome::Charged { amount, .. } if amount == eur(2_550)),
        "{outcome:?}"
    );
    assert_eq!(balance(&pool, &alice).await, (7_450, 2_550));
}

#[tokio::test]
async fn declines_unknown_account_insufficient_credit_wrong_currency_and_non_positive_amounts() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(1_000)).await;

    let cases = [
        (customer("nobody"), eur(1), Decline::UnknownAccount),
        (alice.clone(), eur(1_001), Decline::InsufficientCredit),
        (
            alice.clone(),
            Money::new(10, Currency::USD),
            Decline::CurrencyMismatch,
        ),
        (alice.clone(), eur(0), Decline::Other),
        (alice.clone(), eur(-5), Decline::Other),
    ];
    for (who, amount, expected) in cases {
        let outcome = charge(&pool, OrderId::new(), &who, amount).await;
        assert_eq!(
            declined(&outcome),
            Some(expected),
            "{who} {amount}: {outcome:?}"
        );
    }
    assert_eq!(
        balance(&pool, &alice).await,
        (1_000, 0),
        "a decline changes nothing"
    );

    // Exactly the available credit is fine.
    let outcome = charge(&pool, OrderId::new(), &alice, eur(1_000)).await;
    assert_eq!(declined(&outcome), None);
    assert_eq!(balance(&pool, &alice).await, (0, 1_000));
}

#[tokio::test]
async fn a_second_charge_for_the_order_replies_the_same_and_charges_once() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(10_000)).await;
    let order = OrderId::new();

    let first = charge(&pool, order, &alice, eur(3_000)).await;
    let second = charge(&pool, order, &alice, eur(3_000)).await;

    assert_eq!(first, second);
    assert_eq!(balance(&pool, &alice).await, (7_000, 3_000));

    // A declined order stays declined even once credit would suffice.
    let poor = OrderId::new();
    let first = charge(&pool, poor, &alice, eur(50_000)).await;
    set_credit(&pool, &alice, eur(100_000)).await;
    let second = charge(&pool, poor, &alice, eur(50_000)).await;
    assert_eq!(declined(&first), Some(Decline::InsufficientCredit));
    assert_eq!(first, second);
    assert_eq!(balance(&pool, &alice).await, (100_000, 3_000));
}

#[tokio::test]
async fn refund_returns_exactly_what_was_charged_once() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(10_000)).await;
    let order = OrderId::new();
    let charged = charge(&pool, order, &alice, eur(4_200)).await;

    assert_eq!(refund(&pool, order).await, eur(4_200));
    assert_eq!(balance(&pool, &alice).await, (10_000, 0));

    assert_eq!(refund(&pool, order).await, eur(4_200), "same answer");
    assert_eq!(balance(&pool, &alice).await, (10_000, 0), "refunded once");
    assert_eq!(
        charge(&pool, order, &alice, eur(4_200)).await,
        charged,
        "a late duplicate charge does not charge again"
    );
    assert_eq!(balance(&pool, &alice).await, (10_000, 0));
}

#[tokio::test]
async fn refund_of_an_unknown_order_is_zero_and_refuses_a_late_charge() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(10_000)).await;
    let order = OrderId::new();

    let refunded = refund(&pool, order).await;
    assert_eq!(refunded.amount_minor, 0);
    assert_eq!(refunded.currency.as_str(), "XXX");
    assert_eq!(refund(&pool, order).await, refunded);

    let late = charge(&pool, order, &alice, eur(100)).await;
    assert_eq!(declined(&late), Some(Decline::Other), "{late:?}");
    assert_eq!(balance(&pool, &alice).await, (10_000, 0));
}

#[tokio::test]
async fn refund_after_a_decline_is_zero_in_the_charge_currency() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    charge(&pool, order, &customer("nobody"), eur(100)).await;
    assert_eq!(refund(&pool, order).await, eur(0));
}

#[tokio::test]
async fn currency_cannot_change_while_charges_are_open() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(1_000)).await;
    let order = OrderId::new();
    charge(&pool, order, &alice, eur(100)).await;

    let mut tx = pool.begin().await.unwrap();
    let err = payments::set_credit(&mut tx, &alice, &Money::new(5, Currency::USD))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::CurrencyChange { held: 100, .. }),
        "{err}"
    );
    drop(tx);

    refund(&pool, order).await;
    set_credit(&pool, &alice, Money::new(5, Currency::USD)).await;
    assert_eq!(balance(&pool, &alice).await, (5, 0));
}

/// 50 orders of 300 race for 10_000 of credit: 33 fit, never more; refunding everything
/// (twice, concurrently) restores the credit exactly.
#[tokio::test]
async fn concurrent_charges_never_overdraw() {
    let pool = fresh_pool().await;
    let alice = customer("alice");
    set_credit(&pool, &alice, eur(10_000)).await;
    let orders: Vec<OrderId> = (0..50).map(|_| OrderId::new()).collect();

    let outcomes = futures::future::join_all(orders.iter().map(|&order| {
        let pool = pool.clone();
        let alice = alice.clone();
        async move { charge(&pool, order, &alice, eur(300)).await }
    }))
    .await;

    let charged = outcomes.iter().filter(|o| declined(o).is_none()).count();
    assert_eq!(charged, 33);
    assert_eq!(balance(&pool, &alice).await, (100, 9_900));

    futures::future::join_all(orders.iter().chain(orders.iter()).map(|&order| {
        let pool = pool.clone();
        async move { refund(&pool, order).await }
    }))
    .await;
    assert_eq!(balance(&pool, &alice).await, (10_000, 0));
}

#[tokio::test]
async fn credit_adjustments_and_charges_racing_on_one_account_all_count() {
    let pool = fresh_pool().await;
    let c = customer("race");
    set_credit(&pool, &c, eur(100)).await;

    // A charge holds the account row while an adjustment arrives: the adjustment waits and
    // then adds to the charged-down credit instead of overwriting it.
    let mut held = pool.begin().await.unwrap();
    let outcome = payments::charge(&mut held, OrderId::new(), &c, &eur(30))
        .await
        .unwrap();
    assert_eq!(declined(&outcome), None);
    let adjusting = {
        let (pool, c) = (pool.clone(), c.clone());
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            payments::adjust_credit(&mut conn, &c, &eur(40))
                .await
                .unwrap()
        })
    };
    held.commit().await.unwrap();
    assert!(matches!(
        adjusting.await.unwrap(),
        payments::Adjusted::Applied(_)
    ));
    assert_eq!(balance(&pool, &c).await, (100 - 30 + 40, 30));

    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (pool1, c1) = (pool.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = charge(&pool1, OrderId::new(), &c1, eur(10)).await;
            assert_eq!(declined(&outcome), None);
        }));
        let (pool2, c2) = (pool.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = pool2.acquire().await.unwrap();
            let adjusted = payments::adjust_credit(&mut conn, &c2, &eur(20))
                .await
                .unwrap();
            assert!(matches!(adjusted, payments::Adjusted::Applied(_)));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(balance(&pool, &c).await, (110 - 50 + 100, 80));

    let mut conn = pool.acquire().await.unwrap();
    assert!(matches!(
        payments::adjust_credit(&mut conn, &c, &eur(-161))
            .await
            .unwrap(),
        payments::Adjusted::WouldGoNegative(Some(_))
    ));
    assert!(matches!(
        payments::adjust_credit(&mut conn, &c, &Money::new(5, Currency::USD))
            .await
            .unwrap(),
        payments::Adjusted::OtherCurrency(_)
    ));
    assert_eq!(balance(&pool, &c).await, (160, 80));
}
