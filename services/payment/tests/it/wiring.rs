//! The whole service in-process on the real broker and registry: a command on
//! `payment.commands` is answered on `payment.events`.

use payment_service::{App, Config};
use saga_contracts::ids::OrderId;
use saga_contracts::messages::payment::{ChargePayment, PaymentEvent};
use saga_contracts::{Currency, Metadata, Money};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::Bus;
use crate::support::customer;

#[tokio::test]
async fn commands_on_the_topic_are_answered_on_the_events_topic() {
    let bus = Bus::new().await;
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    let config: Config = bus.config(&db.url, "payment-it");
    let app = App::build(config).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    let put = reqwest::Client::new()
        .put(format!("{url}/accounts/bob"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .json(&json!({"credit": {"amount_minor": 1000, "currency": "EUR"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let order = OrderId::new();
    let charge = ChargePayment {
        meta: Metadata::first(order),
        customer_id: customer("bob"),
        amount: Money::new(400, Currency::EUR),
    };
    bus.send(&charge).await;
    let reply = bus
        .wait_for(|e: &PaymentEvent| match e {
            PaymentEvent::PaymentCharged(r) if r.meta.order_id == order => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reply.meta.causation_id, Some(charge.meta.message_id));
    assert_eq!(reply.amount, charge.amount);

    let account: serde_json::Value = reqwest::get(format!("{url}/accounts/bob"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["credit"]["amount_minor"], 600);
    assert_eq!(account["charged"]["amount_minor"], 400);

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// One `APP_CONSUMER__*` variable alone used to empty the consumer group id.
#[tokio::test]
async fn the_binary_starts_with_a_single_consumer_variable() {
    saga_runtime::testing::assert_starts_with_a_single_consumer_variable(env!(
        "CARGO_BIN_EXE_payment-service"
    ))
    .await;
}
