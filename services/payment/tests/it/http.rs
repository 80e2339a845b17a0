//! The admin API over real HTTP: effects, validation, problem+json.

use serde_json::json;

use crate::support::{fresh_pool, problem, serve};

#[tokio::test]
async fn sets_and_reads_credit() {
    let pool = fresh_pool().await;
    let (url, _stop) = serve(payment_service::http::router(
        pool,
        &saga_runtime::testing::admin_auth(),
    ))
    .await;
    let client = reqwest::Client::new();

    let put = client
        .put(format!("{url}/accounts/cust-1"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .json(&json!({"credit": {"amount_minor": 5000, "currency": "EUR"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let expected = json!({
        "customer_id": "cust-1",
        "credit": {"amount_minor": 5000, "currency": "EUR"},
        "charged": {"amount_minor": 0, "currency": "EUR"},
    });
    assert_eq!(put.json::<serde_json::Value>().await.unwrap(), expected);

    let get = client
        .get(format!("{url}/accounts/cust-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.json::<serde_json::Value>().await.unwrap(), expected);
}

#[tokio::test]
async fn refuses_invalid_input_with_problem_details() {
    let pool = fresh_pool().await;
    let (url, _stop) = serve(payment_service::http::router(
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

    let negative = json!({"credit": {"amount_minor": -1, "currency": "EUR"}});
    let body = problem(put("/accounts/c", negative).await.unwrap(), 422).await;
    assert_eq!(body["errors"][0]["field"], "credit.amount_minor");
    let bad_currency = json!({"credit": {"amount_minor": 1, "currency": "euro"}});
    problem(put("/accounts/c", bad_currency).await.unwrap(), 422).await;
    problem(put("/accounts/c", json!({"credit": 5})).await.unwrap(), 422).await;
    let ok = json!({"credit": {"amount_minor": 1, "currency": "EUR"}});
    let too_long = format!("/accounts/{}", "x".repeat(129));
    let body = problem(put(&too_long, ok).await.unwrap(), 400).await;
    assert_eq!(body["errors"][0]["field"], "customer_id");

    let unknown = client
        .get(format!("{url}/accounts/nobody"))
        .send()
        .await
        .unwrap();
    problem(unknown, 404).await;
}

#[tokio::test]
async fn currency_change_with_open_charges_is_a_conflict() {
    let pool = fresh_pool().await;
    let alice = crate::support::customer("alice");
    let mut tx = pool.begin().await.unwrap();
    let eur = |m| saga_contracts::Money::new(m, saga_contracts::Currency::EUR);
    payment_service::payments::set_credit(&mut tx, &alice, &eur(100))
        .await
        .unwrap();
    let order = saga_contracts::OrderId::new();
    payment_service::payments::charge(&mut tx, order, &alice, &eur(10))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (url, _stop) = serve(payment_service::http::router(
        pool,
        &saga_runtime::testing::admin_auth(),
    ))
    .await;

    let resp = reqwest::Client::new()
        .put(format!("{url}/accounts/alice"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .json(&json!({"credit": {"amount_minor": 1, "currency": "USD"}}))
        .send()
        .await
        .unwrap();
    problem(resp, 409).await;
}
