//! The admin API over real HTTP: effects, validation, problem+json.

use serde_json::json;

use crate::support::{fresh_pool, problem, serve};

#[tokio::test]
async fn sets_and_reads_stock() {
    let pool = fresh_pool().await;
    let (url, _stop) = serve(inventory_service::http::router(
        pool,
        &saga_runtime::testing::admin_auth(),
    ))
    .await;
    let client = reqwest::Client::new();

    let put = client
        .put(format!("{url}/stock/SKU-1"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .json(&json!({"available": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let expected = json!({"sku": "SKU-1", "available": 12, "reserved": 0});
    assert_eq!(put.json::<serde_json::Value>().await.unwrap(), expected);

    let get = client
        .get(format!("{url}/stock/SKU-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.json::<serde_json::Value>().await.unwrap(), expected);
}

#[tokio::test]
async fn refuses_invalid_input_with_problem_details() {
    let pool = fresh_pool().await;
    let (url, _stop) = serve(inventory_service::http::router(
        pool,
        &saga_runtime::testing::admin_auth(),
    ))
    .await;
    let client = reqwest::Client::new();
    let put = |path: &str, body: serde_json::Value| {
        client
            .put(format!("{url}{path}"))
            .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
            .json(&body)
            .send()
    };

    let body = problem(
        put("/stock/A", json!({"available": -1})).await.unwrap(),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "available");
    problem(
        put("/stock/A", json!({"available": 2_147_483_648_i64}))
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(put("/stock/A", json!({"avail": 1})).await.unwrap(), 422).await;
    problem(
        put("/stock/A", json!({"available": "many"})).await.unwrap(),
        422,
    )
    .await;
    let body = problem(
        put("/stock/bad%20sku", json!({"available": 1}))
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "sku");
    let no_json = client
        .put(format!("{url}/stock/A"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(no_json, 415).await;

    let unknown = client
        .get(format!("{url}/stock/NOPE"))
        .send()
        .await
        .unwrap();
    problem(unknown, 404).await;
}

#[tokio::test]
async fn changing_stock_needs_the_admin_token_and_reading_does_not() {
    let pool = fresh_pool().await;
    let (url, _stop) = serve(inventory_service::http::router(
        pool,
        &saga_runtime::testing::admin_auth(),
    ))
    .await;
    let client = reqwest::Client::new();
    let body = json!({"available": 3});

    let anonymous = client
        .put(format!("{url}/stock/LOCKED"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(anonymous.headers().contains_key("www-authenticate"));
    problem(anonymous, 401).await;
    let wrong = client
        .put(format!("{url}/stock/LOCKED"))
        .bearer_auth("not-the-admin-token-at-all")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(wrong, 401).await;
    // Nothing was written by the refused calls.
    let missing = client
        .get(format!("{url}/stock/LOCKED"))
        .send()
        .await
        .unwrap();
    problem(missing, 404).await;

    let admin = client
        .put(format!("{url}/stock/LOCKED"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let read = client
        .get(format!("{url}/stock/LOCKED"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "reads stay open");
}
