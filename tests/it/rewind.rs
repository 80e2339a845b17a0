//! Reprocessing over HTTP on the running suite: `POST /admin/rewind` on the service that runs
//! a consumer group (what the console's lag page calls). The service stops its consumer,
//! moves the group's offsets and starts it again; the inbox drops what was already applied.

use saga_e2e::{Service, Suite, eur};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewinding_a_running_services_group_over_http_applies_nothing_twice() {
    let suite = Suite::start().await;
    suite.set_price("SKU-RW", eur(1_000)).await;
    suite.seed_stock("SKU-RW", 10).await;
    suite.set_credit("cust-rw", eur(10_000)).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(suite.place_order("cust-rw", &[("SKU-RW", 1)], "DE").await);
    }
    for order in suite.wait_all_final(&orders).await {
        assert_eq!(order.status, "APPROVED");
    }
    suite.wait_drained().await;
    let stock_before = suite.stock("SKU-RW").await;

    let group = suite.group_id(Service::Inventory);
    let url = format!("{}/admin/rewind", suite.url(Service::Inventory));
    let post = |body: Value, token: Option<&str>| {
        let mut request = suite.http().post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let admin = Some(suite.admin_token());

    let anonymous = post(
        json!({"group": group, "to_offset": 0, "dry_run": true}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(anonymous.status(), 401, "an admin route");

    let unknown = post(json!({"group": "nobody", "to_offset": 0}), admin)
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let ambiguous = post(json!({"group": group}), admin).await.unwrap();
    assert_eq!(ambiguous.status(), 422, "an offset or a time is needed");

    // Reapply would apply the reservations twice: refused for a group with effects.
    let reapply = post(
        json!({"group": group, "to_offset": 0, "reapply": true}),
        admin,
    )
    .await
    .unwrap();
    assert_eq!(reapply.status(), 409);
    let problem: Value = reapply.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("reapply refused"),
        "{problem}"
    );

    // The dry run: the three ReserveStock commands, all already applied; nothing moves.
    let dry = post(
        json!({"group": group, "to_offset": 0, "dry_run": true}),
        admin,
    )
    .await
    .unwrap();
    assert_eq!(dry.status(), 200);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["reprocessed"], 3, "{dry}");
    assert!(
        dry["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("3 already applied"),
        "{dry}"
    );

    // The rewind: delivered again, dropped by the inbox, the consumer running again after it.
    let done = post(json!({"group": group, "to_offset": 0}), admin)
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(
        (done["dry_run"].clone(), done["reprocessed"].clone()),
        (json!(false), json!(3)),
        "{done}"
    );
    suite.wait_drained().await;
    let stock_after = suite.stock("SKU-RW").await;
    assert_eq!(
        (stock_after.available, stock_after.reserved),
        (stock_before.available, stock_before.reserved),
        "nothing reserved twice"
    );
    let reservations: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(suite.pool(Service::Inventory))
        .await
        .unwrap();
    assert_eq!(reservations, 3);

    // A second rewind finds nothing to do: the group is back at the log end.
    let again: Value = post(
        json!({"group": group, "to_offset": 3, "dry_run": true}),
        admin,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(again["reprocessed"], 0, "{again}");

    let next = suite.place_order("cust-rw", &[("SKU-RW", 1)], "DE").await;
    assert_eq!(
        suite.wait_final(next).await.status,
        "APPROVED",
        "the consumer runs again"
    );
    assert_eq!(
        suite.stock("SKU-RW").await.available,
        stock_before.available - 1
    );
    suite.stop().await;
}
