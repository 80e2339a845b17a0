//! The reservation rules against a real Postgres: all-or-nothing, idempotent by order id,
//! tombstones, and no overselling under concurrency.

use inventory_service::stock::{self, InventoryError, ReserveOutcome};
use saga_contracts::StockLine;
use saga_contracts::ids::OrderId;
use saga_contracts::messages::inventory::Shortage;
use sqlx::PgPool;

use crate::support::{fresh_pool, sku};

fn line(s: &str, quantity: i32) -> StockLine {
    StockLine {
        sku: sku(s),
        quantity,
    }
}

async fn set(pool: &PgPool, s: &str, available: i32) {
    let mut conn = pool.acquire().await.unwrap();
    stock::set_stock(&mut conn, &sku(s), available)
        .await
        .unwrap();
}

/// (available, reserved) of a SKU.
async fn level(pool: &PgPool, s: &str) -> (i32, i32) {
    let mut conn = pool.acquire().await.unwrap();
    let l = stock::stock_level(&mut conn, &sku(s))
        .await
        .unwrap()
        .unwrap();
    (l.available, l.reserved)
}

async fn reserve(pool: &PgPool, order: OrderId, lines: &[StockLine]) -> ReserveOutcome {
    let mut tx = pool.begin().await.unwrap();
    let outcome = stock::reserve(&mut tx, order, lines).await.unwrap();
    tx.commit().await.unwrap();
    outcome
}

async fn release(pool: &PgPool, order: OrderId) -> bool {
    let mut tx = pool.begin().await.unwrap();
    let released = stock::release(&mut tx, order).await.unwrap();
    tx.commit().await.unwrap();
    released
}

#[tokio::test]
async fn reserves_every_line_and_moves_stock_to_reserved() {
    let pool = fresh_pool().await;
    set(&pool, "A", 10).await;
    set(&pool, "B", 5).await;
    let order = OrderId::new();

    let outcome = reserve(&pool, order, &[line("A", 3), line("B", 5)]).await;

    assert!(
        matches!(outcome, ReserveOutcome::Reserved(_)),
        "{outcome:?}"
    );
    assert_eq!(level(&pool, "A").await, (7, 3));
    assert_eq!(level(&pool, "B").await, (0, 5));
}

#[tokio::test]
async fn reserves_nothing_when_any_line_is_short_and_names_the_short_skus() {
    let pool = fresh_pool().await;
    set(&pool, "A", 10).await;
    set(&pool, "B", 1).await;
    let order = OrderId::new();

    let outcome = reserve(&pool, order, &[line("A", 3), line("B", 2), line("C", 1)]).await;

    assert_eq!(
        outcome,
        ReserveOutcome::Unavailable(vec![
            Shortage {
                sku: sku("B"),
                requested: 2,
                available: 1
            },
            Shortage {
                sku: sku("C"),
                requested: 1,
                available: 0
            },
        ])
    );
    assert_eq!(level(&pool, "A").await, (10, 0), "all or nothing");
    assert_eq!(level(&pool, "B").await, (1, 0));
}

#[tokio::test]
async fn repeated_skus_in_one_command_count_together() {
    let pool = fresh_pool().await;
    set(&pool, "A", 4).await;

    let short = reserve(&pool, OrderId::new(), &[line("A", 3), line("A", 2)]).await;
    assert!(
        matches!(&short, ReserveOutcome::Unavailable(s) if s[0].requested == 5),
        "{short:?}"
    );
    let ok = reserve(&pool, OrderId::new(), &[line("A", 1), line("A", 3)]).await;
    assert!(matches!(ok, ReserveOutcome::Reserved(_)), "{ok:?}");
    assert_eq!(level(&pool, "A").await, (0, 4));
}

#[tokio::test]
async fn a_non_positive_quantity_is_refused_and_changes_nothing() {
    let pool = fresh_pool().await;
    set(&pool, "A", 4).await;
    let mut tx = pool.begin().await.unwrap();
    let err = stock::reserve(&mut tx, OrderId::new(), &[line("A", 0)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, InventoryError::InvalidQuantity { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_second_reserve_for_the_order_replies_the_same_and_changes_nothing() {
    let pool = fresh_pool().await;
    set(&pool, "A", 10).await;
    let order = OrderId::new();
    let first = reserve(&pool, order, &[line("A", 3)]).await;
    // Even with different lines: the order's outcome is decided once.
    let second = reserve(&pool, order, &[line("A", 5)]).await;
    assert_eq!(first, second);
    assert_eq!(level(&pool, "A").await, (7, 3));

    let short_order = OrderId::new();
    let first = reserve(&pool, short_order, &[line("A", 100)]).await;
    set(&pool, "A", 1000).await;
    let second = reserve(&pool, short_order, &[line("A", 100)]).await;
    assert!(matches!(first, ReserveOutcome::Unavailable(_)));
    assert_eq!(
        first, second,
        "a duplicate does not retry a refused reservation"
    );
    assert_eq!(level(&pool, "A").await, (1000, 3));
}

#[tokio::test]
async fn release_gives_the_stock_back_once() {
    let pool = fresh_pool().await;
    set(&pool, "A", 10).await;
    set(&pool, "B", 2).await;
    let order = OrderId::new();
    let reserved = reserve(&pool, order, &[line("A", 3), line("B", 2)]).await;

    assert!(release(&pool, order).await);
    assert_eq!(level(&pool, "A").await, (10, 0));
    assert_eq!(level(&pool, "B").await, (2, 0));

    assert!(
        release(&pool, order).await,
        "a duplicate gets the same answer"
    );
    assert_eq!(
        level(&pool, "A").await,
        (10, 0),
        "and gives nothing back twice"
    );
    assert_eq!(
        reserve(&pool, order, &[line("A", 3)]).await,
        reserved,
        "a late duplicate reserve does not reserve again"
    );
    assert_eq!(level(&pool, "A").await, (10, 0));
}

#[tokio::test]
async fn release_of_an_unknown_order_is_a_no_op_that_refuses_a_late_reserve() {
    let pool = fresh_pool().await;
    set(&pool, "A", 10).await;
    let order = OrderId::new();

    assert!(!release(&pool, order).await);
    assert!(!release(&pool, order).await);
    let late = reserve(&pool, order, &[line("A", 3)]).await;

    assert_eq!(late, ReserveOutcome::AlreadyReleased);
    assert_eq!(level(&pool, "A").await, (10, 0));
}

#[tokio::test]
async fn release_after_a_refused_reservation_releases_nothing() {
    let pool = fresh_pool().await;
    set(&pool, "A", 1).await;
    let order = OrderId::new();
    reserve(&pool, order, &[line("A", 3)]).await;
    assert!(!release(&pool, order).await);
    assert_eq!(level(&pool, "A").await, (1, 0));
}

/// 50 orders race for 20 units spread over two SKUs, half of them listing the SKUs in the
/// opposite order (which deadlocks unless rows are locked in one order).
#[tokio::test]
async fn concurrent_reservations_never_oversell_and_conserve_stock() {
    let pool = fresh_pool().await;
    set(&pool, "X", 20).await;
    set(&pool, "Y", 20).await;
    let orders: Vec<OrderId> = (0..50).map(|_| OrderId::new()).collect();

    let outcomes = futures::future::join_all(orders.iter().enumerate().map(|(i, &order)| {
        let pool = pool.clone();
        let lines = if i % 2 == 0 {
            vec![line("X", 1), line("Y", 1)]
        } else {
            vec![line("Y", 1), line("X", 1)]
        };
        async move { reserve(&pool, order, &lines).await }
    }))
    .await;

    let reserved = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::Reserved(_)))
        .count();
    assert_eq!(reserved, 20, "exactly the stock on hand is sold");
    assert_eq!(level(&pool, "X").await, (0, 20));
    assert_eq!(level(&pool, "Y").await, (0, 20));

    // Releasing everything concurrently (twice each) restores every unit, no more.
    futures::future::join_all(orders.iter().chain(orders.iter()).map(|&order| {
        let pool = pool.clone();
        async move { release(&pool, order).await }
    }))
    .await;
    assert_eq!(level(&pool, "X").await, (20, 0));
    assert_eq!(level(&pool, "Y").await, (20, 0));
}

/// The same order's ReserveStock delivered twice at once (two instances) reserves once.
#[tokio::test]
async fn concurrent_duplicates_reserve_once() {
    let pool = fresh_pool().await;
    set(&pool, "A", 100).await;
    let order = OrderId::new();
    let outcomes = futures::future::join_all((0..10).map(|_| {
        let pool = pool.clone();
        async move { reserve(&pool, order, &[line("A", 7)]).await }
    }))
    .await;
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
    assert_eq!(level(&pool, "A").await, (93, 7));
}

#[tokio::test]
async fn adjustments_and_reservations_racing_on_one_sku_all_count() {
    let pool = fresh_pool().await;
    set(&pool, "RACE", 10).await;

    // A reservation holds the row lock while an adjustment arrives: the adjustment waits for
    // it and then adds to the reserved-down value instead of overwriting it.
    let mut held = pool.begin().await.unwrap();
    let first = OrderId::new();
    assert!(matches!(
        stock::reserve(&mut held, first, &[line("RACE", 3)])
            .await
            .unwrap(),
        ReserveOutcome::Reserved(_)
    ));
    let adjusting = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            stock::adjust_stock(&mut conn, &sku("RACE"), 4)
                .await
                .unwrap()
        })
    };
    held.commit().await.unwrap();
    assert!(matches!(
        adjusting.await.unwrap(),
        stock::Adjusted::Applied(_)
    ));
    assert_eq!(level(&pool, "RACE").await, (10 - 3 + 4, 3));

    // Many at once: 5 reservations of 1 and 5 adjustments of +2.
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let reserving = pool.clone();
        tasks.push(tokio::spawn(async move {
            reserve(&reserving, OrderId::new(), &[line("RACE", 1)]).await;
        }));
        let adjusting = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = adjusting.acquire().await.unwrap();
            stock::adjust_stock(&mut conn, &sku("RACE"), 2)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(level(&pool, "RACE").await, (11 - 5 + 10, 3 + 5));

    // Removing more than is available changes nothing.
    let mut conn = pool.acquire().await.unwrap();
    let refused = stock::adjust_stock(&mut conn, &sku("RACE"), -17)
        .await
        .unwrap();
    assert!(matches!(refused, stock::Adjusted::WouldGoNegative(ref l) if l.available == 16));
    assert_eq!(level(&pool, "RACE").await, (16, 8));
    // A new SKU is created by a positive delta only.
    assert!(matches!(
        stock::adjust_stock(&mut conn, &sku("NEW"), -1)
            .await
            .unwrap(),
        stock::Adjusted::WouldGoNegative(_)
    ));
    assert!(matches!(
        stock::adjust_stock(&mut conn, &sku("NEW"), 2)
            .await
            .unwrap(),
        stock::Adjusted::Applied(_)
    ));
}
