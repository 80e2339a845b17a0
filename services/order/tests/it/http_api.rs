//! The HTTP API: placement, validation errors, unknown orders, idempotency keys, OpenAPI.

use serde_json::{Value, json};

use crate::support::{order_body, start};

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn places_an_order_priced_from_the_catalog_and_reads_it_back_at_once() {
    let app = start().await;
    app.put_price("SKU-1", 1250, "EUR").await;
    app.put_price("SKU-2", 99, "EUR").await;

    let r = app
        .post_order(&order_body("cust-1", &[("SKU-1", 2), ("SKU-2", 3)]), None)
        .await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let token = r.headers()["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["order_id"].as_str().unwrap();
    assert_eq!(location, format!("/orders/{id}"));
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["version"], 1);
    assert_eq!(body["consistency_token"], token.as_str());
    assert_eq!(body["total_minor"], 2 * 1250 + 3 * 99);

    // Read-your-writes on the aggregate: no waiting needed.
    let (status, order) = app.get_json(&location).await;
    assert_eq!(status, 200);
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["version"], 1);
    assert_eq!(order["customer_id"], "cust-1");
    assert_eq!(
        order["total"],
        json!({ "amount_minor": 2797, "currency": "EUR" })
    );
    assert_eq!(order["items"][0]["unit_price"]["amount_minor"], 1250);
    assert_eq!(order["items"][1]["line_total"]["amount_minor"], 297);
    assert_eq!(order["shipping_address"]["country"], "GB");

    // Later price changes do not touch placed orders (the price was snapshotted).
    app.put_price("SKU-1", 1, "EUR").await;
    let (_, again) = app.get_json(&location).await;
    assert_eq!(again["total"]["amount_minor"], 2797);
}

#[tokio::test]
async fn validation_errors_are_problems_naming_each_field() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    app.put_price("USD-1", 100, "USD").await;

    let r = app.post_order(&json!({}), None).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(fields(&p), ["customer_id", "items", "shipping_address"]);

    let mut bad = order_body("cust-1", &[("SKU-1", 0), ("bad sku!", 1), ("SKU-1", 1001)]);
    bad["shipping_address"]["country"] = json!("XX");
    bad["shipping_address"]["city"] = json!("  ");
    let p: Value = app.post_order(&bad, None).await.json().await.unwrap();
    assert_eq!(p["status"], 422);
    assert_eq!(
        fields(&p),
        [
            "items[0].quantity",
            "items[1].sku",
            "items[2].sku",
            "items[2].quantity",
            "shipping_address.city",
            "shipping_address.country"
        ]
    );

    let empty = order_body("cust-1", &[]);
    let p: Value = app.post_order(&empty, None).await.json().await.unwrap();
    assert_eq!(fields(&p), ["items"]);
    let many: Vec<(String, i64)> = (0..101).map(|i| (format!("S{i}"), 1)).collect();
    let refs: Vec<(&str, i64)> = many.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    let p: Value = app
        .post_order(&order_body("c", &refs), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fields(&p), ["items"]);

    // Catalog checks: unknown SKU, mixed currencies.
    let r = app
        .post_order(&order_body("cust-1", &[("SKU-1", 1), ("NOPE", 1)]), None)
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(fields(&r.json().await.unwrap()), ["items[1].sku"]);
    let r = app
        .post_order(&order_body("cust-1", &[("SKU-1", 1), ("USD-1", 1)]), None)
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(fields(&r.json().await.unwrap()), ["items"]);

    // Nothing was stored by any of these.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM order_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_are_400_and_415_problems() {
    let app = start().await;
    let r = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let r = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let r = app
        .client
        .post(app.url("/orders"))
        .json(&json!({ "customer_id": "c", "items": [{ "sku": "S", "quantity": "two" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn unknown_orders_are_404_problems() {
    let app = start().await;
    let id = uuid::Uuid::now_v7();
    for path in [
        format!("/orders/{id}"),
        format!("/orders/{id}/events"),
        "/orders/not-a-uuid".to_owned(),
    ] {
        let r = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], 404);
    }
    let (status, p) = app.get_json(&format!("/orders/{id}?as_of=yesterday")).await;
    assert_eq!(status, 400);
    assert_eq!(fields(&p), ["as_of"]);
}

#[tokio::test]
async fn idempotency_key_replays_the_same_order_and_refuses_a_different_body() {
    let app = start().await;
    app.put_price("SKU-1", 500, "EUR").await;
    let body = order_body("cust-1", &[("SKU-1", 1)]);

    let first = app.post_order(&body, Some("key-1")).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    // Same body re-serialised differently (key order) is the same request.
    let reordered: Value = serde_json::from_str(&body.to_string()).unwrap();
    let second = app.post_order(&reordered, Some("key-1")).await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.json::<Value>().await.unwrap(), first);

    let other = order_body("cust-1", &[("SKU-1", 2)]);
    let r = app.post_order(&other, Some("key-1")).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // A different key is a different order.
    let third: Value = app
        .post_order(&body, Some("key-2"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(third["order_id"], first["order_id"]);

    let orders: i64 = sqlx::query_scalar("SELECT count(DISTINCT order_id) FROM order_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(orders, 2);
    let placed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_type LIKE '%OrderPlaced'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        placed, 2,
        "one OrderPlaced message per order, in the outbox"
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let app = start().await;
    app.put_price("SKU-1", 500, "EUR").await;
    let body = order_body("cust-1", &[("SKU-1", 1)]);
    let requests = (0..8).map(|_| app.post_order(&body, Some("same-key")));
    let responses = futures::future::join_all(requests).await;
    let mut ids = std::collections::HashSet::new();
    for r in responses {
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.insert(v["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM order_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn serves_its_openapi_document_and_catalog() {
    let app = start().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/orders",
        "/orders/{id}",
        "/orders/{id}/events",
        "/catalog/{sku}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(
        doc["components"]["schemas"]
            .get("PlaceOrderRequest")
            .is_some()
    );

    app.put_price("B-2", 7, "USD").await;
    app.put_price("A-1", 5, "USD").await;
    let (_, catalog) = app.get_json("/catalog").await;
    assert_eq!(catalog["items"][0]["sku"], "A-1");
    assert_eq!(catalog["items"][1]["unit_price"]["amount_minor"], 7);

    let r = app
        .client
        .put(app.url("/catalog/A-1"))
        .json(&json!({ "unit_price": { "amount_minor": -1, "currency": "usd" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        fields(&r.json().await.unwrap()),
        ["unit_price.amount_minor", "unit_price.currency"]
    );
}

#[tokio::test]
async fn a_zero_price_is_refused() {
    let app = start().await;
    let r = app
        .client
        .put(app.url("/catalog/FREE-1"))
        .json(&json!({ "unit_price": { "amount_minor": 0, "currency": "EUR" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        fields(&r.json().await.unwrap()),
        ["unit_price.amount_minor"]
    );
}

#[tokio::test]
async fn prices_and_rebuilds_need_the_admin_token() {
    let app = start().await;
    let anonymous = reqwest::Client::new();
    let price = json!({ "unit_price": { "amount_minor": 100, "currency": "EUR" } });
    let r = anonymous
        .put(app.url("/catalog/LOCK-1"))
        .json(&price)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = anonymous
        .post(app.url("/admin/projections/order_summaries/rebuild"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, catalog) = app.get_json("/catalog").await;
    assert_eq!(status, 200, "the catalog stays open");
    assert!(
        !catalog.to_string().contains("LOCK-1"),
        "a refused price change wrote nothing"
    );
    app.put_price("LOCK-1", 100, "EUR").await;
}

#[tokio::test]
async fn idempotency_keys_expire_after_their_ttl() {
    let app = start().await;
    app.put_price("SKU-1", 500, "EUR").await;
    let body = order_body("cust-1", &[("SKU-1", 1)]);
    for key in ["old-key", "young-key"] {
        assert_eq!(app.post_order(&body, Some(key)).await.status(), 202);
    }
    // One key is a day and a minute old: past the default 24 h.
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 minute'
         WHERE key = 'old-key'",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    // An expired key is free again: a different body is a new order, not a 422.
    let other = order_body("cust-1", &[("SKU-1", 2)]);
    let reused = app.post_order(&other, Some("old-key")).await;
    assert_eq!(reused.status(), 202);
    assert!(reused.headers().get("idempotent-replayed").is_none());
    // A young key still guards its request.
    assert_eq!(
        app.post_order(&other, Some("young-key")).await.status(),
        422
    );

    // The purge deletes only keys past the TTL.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old-key'")
        .execute(&app.pool)
        .await
        .unwrap();
    let purged = order_service::store::purge_expired_keys(
        &app.pool,
        order_service::service::DEFAULT_KEY_TTL,
    )
    .await
    .unwrap();
    assert_eq!(purged, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys ORDER BY key")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, ["young-key"]);
}

#[tokio::test]
async fn pending_orders_older_than_a_duration_are_listed_and_counted_as_stale() {
    use std::time::Duration;
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let mut ids = Vec::new();
    let mut token = String::new();
    for customer in ["cust-old", "cust-new"] {
        let r = app
            .post_order(&order_body(customer, &[("SKU-1", 1)]), None)
            .await;
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        token = body["consistency_token"].as_str().unwrap().to_owned();
        ids.push(body["order_id"].as_str().unwrap().to_owned());
    }
    // Both are in the read model; the first was placed an hour ago.
    let (status, _) = app
        .get_json(&format!("/orders?status=PENDING&consistency_token={token}"))
        .await;
    assert_eq!(status, 200);
    sqlx::query("UPDATE order_summaries SET placed_at = now() - interval '1 hour' WHERE order_id = $1::uuid")
        .bind(&ids[0])
        .execute(&app.pool)
        .await
        .unwrap();

    let listed = |path: String| {
        let app = &app;
        async move {
            let (status, page) = app.get_json(&path).await;
            assert_eq!(status, 200, "{path}: {page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("/orders?status=PENDING&older_than=30s".into()).await,
        [ids[0].clone()]
    );
    assert_eq!(
        listed("/orders?status=PENDING&older_than=2h".into()).await,
        Vec::<String>::new()
    );
    // Oldest first without older_than; one customer's; other statuses.
    assert_eq!(listed("/orders?status=PENDING".into()).await, ids);
    assert_eq!(
        listed("/orders?status=PENDING&older_than=0s&customer_id=cust-new".into()).await,
        [ids[1].clone()]
    );
    assert!(listed("/orders?status=APPROVED".into()).await.is_empty());
    let first = listed("/orders?status=PENDING&limit=1".into()).await;
    assert_eq!(first, [ids[0].clone()]);
    let next = listed(format!("/orders?status=PENDING&limit=1&after={}", ids[0])).await;
    assert_eq!(next, [ids[1].clone()]);

    assert_eq!(
        order_service::projection::count_pending_older_than(&app.pool, Duration::from_secs(30))
            .await
            .unwrap(),
        1
    );

    for bad in [
        "/orders?older_than=30s&customer_id=cust-old",
        "/orders?status=PENDING&older_than=soon",
        "/orders?status=LOST",
        "/orders",
    ] {
        let (status, problem) = app.get_json(bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}
