//! Snapshots of the order fold: a fold from snapshots equals the full fold for random
//! streams, `as_of` is exact before and after a snapshot, snapshots of another fold version
//! are ignored and rebuilt, and the write path stores them every N events.
//!
//! Real orders stop at two or three events, so these tests write longer streams straight
//! into the event store (`Order::apply` folds any OrderApproved/OrderRejected after
//! OrderPlaced; the commands are what keep real streams short).

use chrono::{DateTime, Utc};
use order_service::domain::OrderEvent;
use order_service::service::{Command, Decision};
use order_service::snapshot::{self, Folded, SNAPSHOT_FOLD_VERSION};
use order_service::store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use saga_contracts::Metadata;
use saga_contracts::ids::{CustomerId, OrderId, Sku};
use saga_contracts::{Address, Currency, Money, OrderLine};
use sqlx::PgPool;

use crate::support::{Options, order_body, start_with};

fn placed() -> OrderEvent {
    let price = Money::new(250, Currency::EUR);
    OrderEvent::OrderPlaced {
        customer_id: CustomerId::parse("snap-customer").unwrap(),
        lines: vec![OrderLine {
            sku: Sku::parse("SKU-1").unwrap(),
            quantity: 2,
            unit_price: price,
        }],
        total: Money::new(500, Currency::EUR),
        shipping_address: Address {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical St".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1 1AA".into(),
            country: "GB".into(),
        },
    }
}

/// Appends OrderPlaced and then `len - 1` random approvals/rejections; returns the id.
async fn random_stream(pool: &PgPool, rng: &mut StdRng, len: i32) -> OrderId {
    let id = OrderId::new();
    let mut conn = pool.acquire().await.unwrap();
    for version in 1..=len {
        let event = if version == 1 {
            placed()
        } else if rng.random_bool(0.5) {
            OrderEvent::OrderApproved {}
        } else {
            OrderEvent::OrderRejected {
                reason: format!("reason {}", rng.random_range(0..1000)),
            }
        };
        store::append_event(&mut conn, id, version, &event, &serde_json::json!({}))
            .await
            .unwrap();
    }
    id
}

async fn fold(pool: &PgPool, id: OrderId, as_of: Option<DateTime<Utc>>, every: u32) -> Folded {
    let mut conn = pool.acquire().await.unwrap();
    snapshot::fold(&mut conn, id, as_of, every).await.unwrap()
}

async fn recorded_at(pool: &PgPool, id: OrderId) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar("SELECT recorded_at FROM order_events WHERE order_id = $1 ORDER BY version")
        .bind(id.as_uuid())
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn snapshot_versions(pool: &PgPool, id: OrderId) -> Vec<(i32, i32)> {
    sqlx::query_as(
        "SELECT version, fold_version FROM order_snapshots WHERE order_id = $1 ORDER BY version",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .unwrap()
}

/// What the full fold (no snapshot read or written) gives.
async fn full(pool: &PgPool, id: OrderId, as_of: Option<DateTime<Utc>>) -> Folded {
    let folded = fold(pool, id, as_of, 0).await;
    assert_eq!(folded.from_snapshot, None);
    folded
}

#[tokio::test]
async fn snapshot_fold_equals_full_fold_for_random_streams() {
    let app = start_with(Options {
        run_projector: false,
        ..Options::default()
    })
    .await;
    let seed = 0x5eed_2026_1205;
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..25 {
        let len = rng.random_range(1..=60);
        let every = [1u32, 2, 3, 5, 7, 10, 16][rng.random_range(0..7)];
        let id = random_stream(&app.pool, &mut rng, len).await;
        let context = format!("seed {seed:#x}, case {case}: {len} events, snapshot every {every}");
        let expected = full(&app.pool, id, None).await;

        // The first fold writes the latest due snapshot; the second starts from it.
        let writing = fold(&app.pool, id, None, every).await;
        let from_snapshot = fold(&app.pool, id, None, every).await;
        let due = (len / every as i32) * every as i32;
        assert_eq!(writing.order, expected.order, "{context}");
        assert_eq!(from_snapshot.order, expected.order, "{context}");
        assert_eq!(from_snapshot.last_seq, expected.last_seq, "{context}");
        assert_eq!(
            from_snapshot.from_snapshot,
            (due > 0).then_some(due),
            "{context}"
        );
        assert_eq!(
            from_snapshot.events_folded as i32,
            len - due,
            "{context}: only the tail after the snapshot is read"
        );

        // as_of at a random event's time: the same answer with and without snapshots.
        let times = recorded_at(&app.pool, id).await;
        let at = times[rng.random_range(0..times.len())];
        assert_eq!(
            fold(&app.pool, id, Some(at), every).await.order,
            full(&app.pool, id, Some(at)).await.order,
            "{context}, as_of {at}"
        );
    }
}

#[tokio::test]
async fn as_of_before_and_after_a_snapshot_answers_exactly() {
    let app = start_with(Options {
        run_projector: false,
        ..Options::default()
    })
    .await;
    let mut rng = StdRng::seed_from_u64(7);
    let id = random_stream(&app.pool, &mut rng, 7).await;
    fold(&app.pool, id, None, 3).await;
    assert_eq!(
        snapshot_versions(&app.pool, id).await,
        vec![(6, SNAPSHOT_FOLD_VERSION)]
    );
    // Also a snapshot at 3, as a stream that grew by folds at 3 and at 6 would have.
    let mut conn = app.pool.acquire().await.unwrap();
    let events = store::load_events(&mut conn, id, None).await.unwrap();
    let at_3 = order_service::domain::Order::from_events(&events[..3])
        .unwrap()
        .unwrap();
    snapshot::save(
        &mut conn,
        &at_3,
        events[2].global_seq,
        events[2].recorded_at,
    )
    .await
    .unwrap();
    drop(conn);
    let times = recorded_at(&app.pool, id).await;

    // Before the first event: no order. Before the snapshot at 3: folded from the events.
    let before_all = times[0] - chrono::Duration::microseconds(1);
    assert_eq!(fold(&app.pool, id, Some(before_all), 3).await.order, None);
    let v2 = fold(&app.pool, id, Some(times[1]), 3).await;
    assert_eq!(v2.from_snapshot, None);
    assert_eq!(v2.order.as_ref().unwrap().version, 2);
    assert_eq!(v2.order, full(&app.pool, id, Some(times[1])).await.order);
    // Exactly at the snapshot's last event, between the snapshots, and after the last one.
    for (at, snapshot_used, version) in [(2, 3, 3), (4, 3, 5), (6, 6, 7)] {
        let folded = fold(&app.pool, id, Some(times[at]), 3).await;
        assert_eq!(
            folded.from_snapshot,
            Some(snapshot_used),
            "as_of event {}",
            at + 1
        );
        assert_eq!(folded.order.as_ref().unwrap().version, version);
        assert_eq!(
            folded.order,
            full(&app.pool, id, Some(times[at])).await.order
        );
    }

    // A clock that went back: event 2 recorded after event 5. The snapshots were written
    // from these times (rewritten here), so as_of at event 4 cannot use the snapshot at 3
    // (it covers event 2, recorded later) and must leave event 2 out, as the full fold does.
    sqlx::query("UPDATE order_events SET recorded_at = $2 WHERE order_id = $1 AND version = 2")
        .bind(id.as_uuid())
        .bind(times[4] + chrono::Duration::microseconds(1))
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM order_snapshots WHERE order_id = $1")
        .bind(id.as_uuid())
        .execute(&app.pool)
        .await
        .unwrap();
    fold(&app.pool, id, None, 3).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let events = store::load_events(&mut conn, id, None).await.unwrap();
    let at_3 = order_service::domain::Order::from_events(&events[..3])
        .unwrap()
        .unwrap();
    let covers = events[..3].iter().map(|e| e.recorded_at).max().unwrap();
    snapshot::save(&mut conn, &at_3, events[2].global_seq, covers)
        .await
        .unwrap();
    drop(conn);
    let folded = fold(&app.pool, id, Some(times[3]), 3).await;
    assert_eq!(folded.from_snapshot, None);
    assert_eq!(
        folded.order,
        full(&app.pool, id, Some(times[3])).await.order
    );
}

#[tokio::test]
async fn a_snapshot_of_another_fold_version_is_ignored_and_rebuilt() {
    let app = start_with(Options {
        run_projector: false,
        ..Options::default()
    })
    .await;
    let mut rng = StdRng::seed_from_u64(11);
    let id = random_stream(&app.pool, &mut rng, 10).await;
    fold(&app.pool, id, None, 5).await;
    let expected = full(&app.pool, id, None).await;

    // A snapshot as an older fold logic would have written it: a state the current fold
    // would not compute, marked with the previous fold version.
    sqlx::query(
        "UPDATE order_snapshots SET fold_version = $2, \
         state = jsonb_set(state, '{rejection_reason}', '\"from an old fold\"') \
         WHERE order_id = $1",
    )
    .bind(id.as_uuid())
    .bind(SNAPSHOT_FOLD_VERSION - 1)
    .execute(&app.pool)
    .await
    .unwrap();
    let folded = fold(&app.pool, id, None, 5).await;
    assert_eq!(folded.from_snapshot, None, "the old snapshot was used");
    assert_eq!(folded.order, expected.order);
    // ...and that fold rebuilt it with the current logic.
    assert_eq!(
        snapshot_versions(&app.pool, id).await,
        vec![(10, SNAPSHOT_FOLD_VERSION)]
    );
    let again = fold(&app.pool, id, None, 5).await;
    assert_eq!(again.from_snapshot, Some(10));
    assert_eq!(again.order, expected.order);

    // One of a newer fold version (a newer build during a rolling deploy) is ignored too,
    // and left for that build.
    sqlx::query("UPDATE order_snapshots SET fold_version = $2 WHERE order_id = $1")
        .bind(id.as_uuid())
        .bind(SNAPSHOT_FOLD_VERSION + 1)
        .execute(&app.pool)
        .await
        .unwrap();
    let folded = fold(&app.pool, id, None, 5).await;
    assert_eq!(folded.from_snapshot, None);
    assert_eq!(folded.order, expected.order);
    assert_eq!(
        snapshot_versions(&app.pool, id).await,
        vec![(10, SNAPSHOT_FOLD_VERSION + 1)]
    );
}

#[tokio::test]
async fn the_write_path_stores_a_snapshot_every_n_events_and_reads_from_it() {
    let app = start_with(Options {
        run_projector: false,
        snapshot_every: 2,
        ..Options::default()
    })
    .await;
    app.put_price("SKU-1", 100, "EUR").await;
    let r = app
        .post_order(&order_body("c1", &[("SKU-1", 1)]), None)
        .await;
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let id: OrderId = body["order_id"].as_str().unwrap().parse().unwrap();
    assert!(snapshot_versions(&app.pool, id).await.is_empty());

    let mut tx = app.pool.begin().await.unwrap();
    let decision = app
        .orders
        .decide(
            &mut saga_outbox::Tx::direct(&mut tx),
            id,
            Command::Approve,
            &Metadata::first(id),
        )
        .await
        .unwrap();
    assert!(matches!(decision, Decision::Applied(_)));
    tx.commit().await.unwrap();
    assert_eq!(
        snapshot_versions(&app.pool, id).await,
        vec![(2, SNAPSHOT_FOLD_VERSION)]
    );

    let (status, order) = app.get_json(&format!("/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(order["status"], "APPROVED");
    assert_eq!(order["version"], 2);
    assert_eq!(fold(&app.pool, id, None, 2).await.from_snapshot, Some(2));
}
