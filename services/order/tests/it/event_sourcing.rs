//! Event sourcing, commands, temporal queries, the read model, replay and read-your-writes.

use std::time::Duration;

use order_service::service::{Command, Decision};
use saga_contracts::Metadata;
use saga_contracts::ids::OrderId;
use serde_json::Value;

use crate::support::{Options, TestApp, order_body, start, start_with, wait_until};

async fn place(app: &TestApp, customer: &str) -> (OrderId, String) {
    let r = app
        .post_order(&order_body(customer, &[("SKU-1", 2)]), None)
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    (
        v["order_id"].as_str().unwrap().parse().unwrap(),
        v["consistency_token"].as_str().unwrap().to_owned(),
    )
}

async fn command(app: &TestApp, id: OrderId, cmd: Command<'_>) -> Decision {
    let mut tx = app.pool.begin().await.unwrap();
    let decision = app
        .orders
        .decide(
            &mut saga_outbox::Tx::direct(&mut tx),
            id,
            cmd,
            &Metadata::first(id),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    decision
}

async fn outbox_types(app: &TestApp, id: OrderId) -> Vec<String> {
    sqlx::query_scalar("SELECT message_type FROM outbox WHERE message_key = $1 ORDER BY id")
        .bind(id.to_string())
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn approve_and_reject_append_events_once_and_refuse_contradictions() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (a, _) = place(&app, "c1").await;
    let (b, _) = place(&app, "c1").await;

    assert!(matches!(
        command(&app, a, Command::Approve).await,
        Decision::Applied(_)
    ));
    // A redelivered/repeated ApproveOrder changes nothing and publishes nothing new.
    assert!(matches!(
        command(&app, a, Command::Approve).await,
        Decision::AlreadyDone
    ));
    // Rejecting an approved order is refused.
    assert!(matches!(
        command(&app, a, Command::Reject { reason: "late" }).await,
        Decision::Refused(_)
    ));
    let types = outbox_types(&app, a).await;
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types[0].ends_with("OrderPlaced") && types[1].ends_with("OrderApproved"));

    assert!(matches!(
        command(
            &app,
            b,
            Command::Reject {
                reason: "out of stock"
            }
        )
        .await,
        Decision::Applied(_)
    ));
    let (_, order) = app.get_json(&format!("/orders/{b}")).await;
    assert_eq!(order["status"], "REJECTED");
    assert_eq!(order["rejection_reason"], "out of stock");
    assert_eq!(order["version"], 2);
    let (_, order) = app.get_json(&format!("/orders/{a}")).await;
    assert_eq!(order["status"], "APPROVED");

    let unknown = OrderId::new();
    assert!(matches!(
        command(&app, unknown, Command::Approve).await,
        Decision::UnknownOrder
    ));
}

#[tokio::test]
async fn concurrent_writers_of_one_version_conflict() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (id, _) = place(&app, "c1").await;
    // Two transactions fold version 1 and both try to append version 2.
    let mut t1 = app.pool.begin().await.unwrap();
    let mut t2 = app.pool.begin().await.unwrap();
    let first = app
        .orders
        .decide(
            &mut saga_outbox::Tx::direct(&mut t1),
            id,
            Command::Approve,
            &Metadata::first(id),
        )
        .await;
    assert!(matches!(first, Ok(Decision::Applied(_))));
    let loser = tokio::spawn(async move {
        let r = app_decide_reject(&mut t2, id).await;
        (r, t2)
    });
    t1.commit().await.unwrap();
    let (result, _t2) = loser.await.unwrap();
    assert!(result.contains("modified concurrently"), "{result}");
}

async fn app_decide_reject(tx: &mut sqlx::PgConnection, id: OrderId) -> String {
    // The same SQL the service runs, through the store: version 2 is already taken.
    let event = order_service::domain::OrderEvent::OrderRejected { reason: "x".into() };
    match order_service::store::append_event(tx, id, 2, &event, &serde_json::json!({})).await {
        Ok(_) => "appended".into(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn temporal_queries_replay_events_up_to_a_time_and_history_lists_them() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (id, _) = place(&app, "c1").await;
    let (_, history) = app.get_json(&format!("/orders/{id}/events")).await;
    let placed_at = history["events"][0]["recorded_at"]
        .as_str()
        .unwrap()
        .to_owned();
    command(&app, id, Command::Approve).await;

    let (_, history) = app.get_json(&format!("/orders/{id}/events")).await;
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "OrderPlaced");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["data"]["customer_id"], "c1");
    assert_eq!(events[1]["type"], "OrderApproved");
    assert!(events[1]["global_seq"].as_i64() > events[0]["global_seq"].as_i64());

    let at = urlencode(&placed_at);
    let (status, then) = app.get_json(&format!("/orders/{id}?as_of={at}")).await;
    assert_eq!(status, 200);
    assert_eq!(then["status"], "PENDING");
    assert_eq!(then["version"], 1);
    let (_, now) = app.get_json(&format!("/orders/{id}")).await;
    assert_eq!(now["status"], "APPROVED");
    assert_eq!(now["version"], 2);

    let (status, _) = app
        .get_json(&format!("/orders/{id}?as_of=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(status, 404, "the order did not exist yet");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn listing_with_a_consistency_token_reads_your_writes_and_pages() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let mut ids = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let (id, t) = place(&app, "pager").await;
        ids.push(id.to_string());
        token = t;
    }
    place(&app, "someone-else").await;

    let r = app
        .client
        .get(app.url("/orders?customer_id=pager&limit=2"))
        .header("X-Consistency-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    // Newest first: the write just made is on the first page, at once.
    assert_eq!(page["items"][0]["order_id"], ids[4].as_str());
    assert_eq!(page["items"][0]["status"], "PENDING");
    assert_eq!(page["items"][0]["total"]["amount_minor"], 200);
    let mut seen: Vec<String> = Vec::new();
    let mut page = page;
    loop {
        for item in page["items"].as_array().unwrap() {
            seen.push(item["order_id"].as_str().unwrap().to_owned());
        }
        let Some(after) = page["next_after"].as_str() else {
            break;
        };
        let (status, next) = app
            .get_json(&format!("/orders?customer_id=pager&limit=2&after={after}"))
            .await;
        assert_eq!(status, 200);
        page = next;
    }
    ids.reverse();
    assert_eq!(seen, ids);

    let (status, p) = app.get_json("/orders").await;
    assert_eq!(status, 400);
    assert_eq!(p["errors"][0]["field"], "customer_id");
    let (status, _) = app
        .get_json("/orders?customer_id=pager&consistency_token=999999")
        .await;
    assert_eq!(status, 400, "a token never issued");
}

#[tokio::test]
async fn a_token_the_read_model_has_not_reached_is_a_503_after_a_bounded_wait() {
    let app = start_with(Options {
        run_projector: false,
        read_your_writes_timeout_ms: 300,
        ..Options::default()
    })
    .await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (id, token) = place(&app, "c1").await;
    let started = std::time::Instant::now();
    let r = app
        .client
        .get(app.url(&format!("/orders?customer_id=c1&consistency_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Without a token the stale read model answers (empty: nothing projected yet).
    let (_, stale) = app.get_json("/orders?customer_id=c1").await;
    assert_eq!(stale["items"].as_array().unwrap().len(), 0);

    order_service::projection::catch_up(&app.pool)
        .await
        .unwrap();
    let (status, page) = app
        .get_json(&format!("/orders?customer_id=c1&consistency_token={token}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["order_id"], id.to_string().as_str());
}

#[tokio::test]
async fn the_read_model_rebuilt_from_the_event_log_gives_the_same_answers() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (a, _) = place(&app, "c1").await;
    let (b, _) = place(&app, "c1").await;
    let (_, _) = place(&app, "c2").await;
    command(&app, a, Command::Approve).await;
    command(
        &app,
        b,
        Command::Reject {
            reason: "payment declined",
        },
    )
    .await;

    // Wait for the projector (woken by NOTIFY) to apply everything.
    let list = |c: &'static str| {
        let app = &app;
        async move { app.get_json(&format!("/orders?customer_id={c}")).await.1 }
    };
    let before = wait_until(
        "projection of approve/reject",
        Duration::from_secs(10),
        || async {
            let v = list("c1").await;
            let statuses: Vec<_> = v["items"]
                .as_array()?
                .iter()
                .map(|i| i["status"].clone())
                .collect();
            (statuses == ["REJECTED", "APPROVED"]).then_some(v)
        },
    )
    .await;
    let before_c2 = list("c2").await;
    assert_eq!(before["items"][0]["rejection_reason"], "payment declined");

    // Drop the read model and the checkpoint.
    sqlx::query("TRUNCATE order_summaries")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_checkpoints SET last_tx_id = '0', last_seq = 0")
        .execute(&app.pool)
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/admin/projections/order_summaries/rebuild"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["events_replayed"], 5);

    assert_eq!(list("c1").await, before);
    assert_eq!(list("c2").await, before_c2);
}

/// Two identical orders, one rejected the way events were stored before `schema_version`
/// existed (v1 `{"reason": ..}`, written by hand), one rejected now (v2): the fold, the
/// temporal query, the history and the rebuilt read model cannot tell them apart.
#[tokio::test]
async fn an_old_version_stored_event_folds_through_its_upcaster_like_a_current_one() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (old, _) = place(&app, "upcast").await;
    let (new, _) = place(&app, "upcast").await;
    sqlx::query(
        "INSERT INTO order_events (order_id, version, type, schema_version, payload) \
         VALUES ($1, 2, 'OrderRejected', 1, '{\"reason\": \"out of stock\"}')",
    )
    .bind(uuid::Uuid::from(old))
    .execute(&app.pool)
    .await
    .unwrap();
    command(
        &app,
        new,
        Command::Reject {
            reason: "out of stock",
        },
    )
    .await;
    let stored: Vec<(i32, Value)> = sqlx::query_as(
        "SELECT schema_version, payload FROM order_events \
         WHERE type = 'OrderRejected' ORDER BY order_id = $1 DESC",
    )
    .bind(uuid::Uuid::from(old))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored[0].0, 1);
    assert_eq!(
        stored[1],
        (2, serde_json::json!({"rejection_reason": "out of stock"}))
    );

    let comparable = |mut v: Value| {
        for key in ["order_id", "placed_at", "updated_at"] {
            v.as_object_mut().unwrap().remove(key);
        }
        v
    };
    let (_, old_view) = app.get_json(&format!("/orders/{old}")).await;
    let (_, new_view) = app.get_json(&format!("/orders/{new}")).await;
    assert_eq!(old_view["status"], "REJECTED");
    assert_eq!(old_view["rejection_reason"], "out of stock");
    assert_eq!(comparable(old_view), comparable(new_view));
    let far = "2999-01-01T00:00:00Z";
    let (_, then) = app.get_json(&format!("/orders/{old}?as_of={far}")).await;
    assert_eq!(then["rejection_reason"], "out of stock");
    let (_, history) = app.get_json(&format!("/orders/{old}/events")).await;
    assert_eq!(
        history["events"][1]["data"]["rejection_reason"],
        "out of stock"
    );

    // Replay of the mixed log: both summaries equal what the fold says.
    app.orders.rebuild_read_model().await.unwrap();
    let (_, page) = app.get_json("/orders?customer_id=upcast").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["status"], "REJECTED");
        assert_eq!(item["rejection_reason"], "out of stock");
        assert_eq!(item["version"], 2);
    }
}
