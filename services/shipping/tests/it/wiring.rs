//! The whole service in-process on the real broker and registry: a command on
//! `shipping.commands` is answered on `shipping.events`, and OrderApproved on `order.events`
//! dispatches the shipment.

use saga_contracts::ids::{OrderId, Sku};
use saga_contracts::messages::order::OrderApproved;
use saga_contracts::messages::shipping::{ScheduleShipment, ShippingEvent};
use saga_contracts::{Address, Metadata, StockLine};
use shipping_service::{App, Config};
use tokio_util::sync::CancellationToken;

use crate::support::Bus;

#[tokio::test]
async fn schedules_on_command_and_dispatches_on_approval() {
    let bus = Bus::new().await;
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    let config: Config = bus.config(&db.url, "shipping-it");
    let app = App::build(config).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    let order = OrderId::new();
    let schedule = ScheduleShipment {
        meta: Metadata::first(order),
        address: Address {
            name: "N".into(),
            line1: "L".into(),
            line2: None,
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: "FR".into(),
        },
        lines: vec![StockLine {
            sku: Sku::parse("A").unwrap(),
            quantity: 1,
        }],
    };
    bus.send(&schedule).await;
    let shipment_id = bus
        .wait_for(|e: &ShippingEvent| match e {
            ShippingEvent::ShipmentScheduled(s) if s.meta.order_id == order => Some(s.shipment_id),
            _ => None,
        })
        .await;

    bus.send(&OrderApproved {
        meta: Metadata::caused_by(&schedule.meta),
    })
    .await;
    let dispatched = bus
        .wait_for(|e: &ShippingEvent| match e {
            ShippingEvent::ShipmentDispatched(d) if d.meta.order_id == order => Some(d.shipment_id),
            _ => None,
        })
        .await;
    assert_eq!(dispatched, shipment_id);

    let body: serde_json::Value = reqwest::get(format!("{url}/shipments/{order}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "dispatched");

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// One `APP_CONSUMER__*` variable alone used to empty the consumer group id.
#[tokio::test]
async fn the_binary_starts_with_a_single_consumer_variable() {
    saga_runtime::testing::assert_starts_with_a_single_consumer_variable(env!(
        "CARGO_BIN_EXE_shipping-service"
    ))
    .await;
}
