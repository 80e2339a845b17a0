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
    // POST /admin/rewind: the status and the JSON body (problem+json on a refusal).
    let post = async |body: Value, token: Option<&str>| -> (u16, Value) {
        let mut request = suite.http().post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let admin = Some(suite.admin_token());
    let text = |v: &Value, field: &str| v[field].as_str().unwrap_or_default().to_owned();

    let (status, _) = post(
        json!({"group": group, "to_offset": 0, "dry_run": true}),
        None,
    )
    .await;
    assert_eq!(status, 401, "an admin route");
    let (status, _) = post(json!({"group": "nobody", "to_offset": 0}), admin).await;
    assert_eq!(status, 404);
    let (status, _) = post(json!({"group": group}), admin).await;
    assert_eq!(status, 422, "an offset or a time is needed");

    // Reapply would apply the reservations twice: refused for a group with effects.
    let (status, problem) = post(
        json!({"group": group, "to_offset": 0, "reapply": true}),
        admin,
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        text(&problem, "detail").contains("reapply refused"),
        "{problem}"
    );

    // The dry run: the three ReserveStock commands, all already applied; nothing moves.
    let (status, dry) = post(
        json!({"group": group, "to_offset": 0, "dry_run": true}),
        admin,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(dry["reprocessed"], 3, "{dry}");
    assert!(text(&dry, "summary").contains("3 already applied"), "{dry}");

    // The rewind: delivered again, dropped by the inbox, the consumer running again after it.
    let (status, done) = post(json!({"group": group, "to_offset": 0}), admin).await;
    assert_eq!(status, 200);
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
    let (status, again) = post(
        json!({"group": group, "to_offset": 3, "dry_run": true}),
        admin,
    )
    .await;
    assert_eq!(
        (status, again["reprocessed"].clone()),
        (200, json!(0)),
        "{again}"
    );

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
