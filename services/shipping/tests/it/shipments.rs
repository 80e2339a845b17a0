//! The shipping rules against a real Postgres: schedule or refuse by country, cancel once,
//! dispatch only after approval and only once, tombstones.

use saga_contracts::ids::{OrderId, Sku};
use saga_contracts::{Address, StockLine};
use shipping_service::shipments::{
    self, CANCELLED_BEFORE_SCHEDULED, ScheduleOutcome, ServedCountries,
};
use sqlx::PgPool;

use crate::support::fresh_pool;

fn address(country: &str) -> Address {
    Address {
        name: "Ada Lovelace".into(),
        line1: "1 Analytical St".into(),
        line2: None,
        city: "London".into(),
        postal_code: "N1".into(),
        country: country.into(),
    }
}

fn lines() -> Vec<StockLine> {
    vec![StockLine {
        sku: Sku::parse("A").unwrap(),
        quantity: 2,
    }]
}

fn served() -> ServedCountries {
    ServedCountries::new(["DE", "gb"]).unwrap()
}

async fn schedule(pool: &PgPool, order: OrderId, country: &str) -> ScheduleOutcome {
    let mut tx = pool.begin().await.unwrap();
    let outcome = shipments::schedule(&mut tx, order, &address(country), &lines(), &served())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    outcome
}

async fn cancel(pool: &PgPool, order: OrderId) -> bool {
    let mut tx = pool.begin().await.unwrap();
    let cancelled = shipments::cancel(&mut tx, order).await.unwrap();
    tx.commit().await.unwrap();
    cancelled
}

async fn dispatch(pool: &PgPool, order: OrderId) -> Option<saga_contracts::ShipmentId> {
    let mut tx = pool.begin().await.unwrap();
    let dispatched = shipments::dispatch(&mut tx, order).await.unwrap();
    tx.commit().await.unwrap();
    dispatched
}

async fn status(pool: &PgPool, order: OrderId) -> String {
    let mut conn = pool.acquire().await.unwrap();
    shipments::shipment(&mut conn, order)
        .await
        .unwrap()
        .unwrap()
        .status
        .to_string()
}

#[test]
fn served_countries_are_validated_and_case_insensitive() {
    assert!(ServedCountries::new(["DE", "USA"]).is_err());
    assert!(ServedCountries::new(["D1"]).is_err());
    let s = served();
    assert!(s.serves("de") && s.serves("GB") && !s.serves("FR"));
}

#[tokio::test]
async fn schedules_to_a_served_country_and_refuses_others() {
    let pool = fresh_pool().await;
    let booked = OrderId::new();
    let refused = OrderId::new();

    let ok = schedule(&pool, booked, "de").await;
    let no = schedule(&pool, refused, "FR").await;

    assert!(matches!(ok, ScheduleOutcome::Scheduled(_)), "{ok:?}");
    assert!(
        matches!(&no, ScheduleOutcome::Refused(r) if r.contains("\"FR\"")),
        "{no:?}"
    );
    assert_eq!(status(&pool, booked).await, "scheduled");
    assert_eq!(status(&pool, refused).await, "refused");
}

#[tokio::test]
async fn a_second_schedule_replies_the_same_and_books_once() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    let first = schedule(&pool, order, "DE").await;
    let second = schedule(&pool, order, "FR").await;
    assert_eq!(first, second, "the order's outcome is decided once");

    let refused = OrderId::new();
    let first = schedule(&pool, refused, "FR").await;
    assert_eq!(schedule(&pool, refused, "DE").await, first);

    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM shipments WHERE shipment_id IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn cancel_undoes_a_booking_once_and_a_late_schedule_replays() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    let booked = schedule(&pool, order, "DE").await;

    assert!(cancel(&pool, order).await);
    assert!(cancel(&pool, order).await, "same answer");
    assert_eq!(status(&pool, order).await, "cancelled");
    assert_eq!(schedule(&pool, order, "DE").await, booked);
    assert_eq!(status(&pool, order).await, "cancelled", "not booked again");
    assert_eq!(
        dispatch(&pool, order).await,
        None,
        "a cancelled shipment never leaves"
    );
}

#[tokio::test]
async fn cancel_before_schedule_leaves_a_tombstone_that_refuses_the_schedule() {
    let pool = fresh_pool().await;
    let order = OrderId::new();

    assert!(!cancel(&pool, order).await);
    assert!(!cancel(&pool, order).await);
    let late = schedule(&pool, order, "DE").await;

    assert_eq!(
        late,
        ScheduleOutcome::Refused(CANCELLED_BEFORE_SCHEDULED.into())
    );
    assert_eq!(status(&pool, order).await, "tombstone");
}

#[tokio::test]
async fn cancel_of_a_refused_shipment_cancels_nothing() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    schedule(&pool, order, "FR").await;
    assert!(!cancel(&pool, order).await);
    assert_eq!(status(&pool, order).await, "refused");
}

#[tokio::test]
async fn dispatch_happens_once_and_only_for_a_scheduled_shipment() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    let ScheduleOutcome::Scheduled(id) = schedule(&pool, order, "GB").await else {
        panic!("not scheduled");
    };

    assert_eq!(dispatch(&pool, order).await, Some(id));
    assert_eq!(
        dispatch(&pool, order).await,
        None,
        "a second approval publishes nothing"
    );
    assert_eq!(status(&pool, order).await, "dispatched");
    assert!(
        !cancel(&pool, order).await,
        "a dispatched shipment cannot be called back"
    );
    assert_eq!(status(&pool, order).await, "dispatched");

    assert_eq!(dispatch(&pool, OrderId::new()).await, None, "unknown order");
    let refused = OrderId::new();
    schedule(&pool, refused, "FR").await;
    assert_eq!(dispatch(&pool, refused).await, None);
}

#[tokio::test]
async fn concurrent_duplicates_book_once() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    let outcomes = futures::future::join_all((0..10).map(|_| {
        let pool = pool.clone();
        async move { schedule(&pool, order, "DE").await }
    }))
    .await;
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
}
