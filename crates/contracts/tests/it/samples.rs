//! A fully populated sample of every message type: every optional field set, every array
//! non-empty, so the drift test visits every field of every schema.

use saga_contracts::*;

pub fn meta() -> Metadata {
    Metadata::caused_by(&Metadata::first(OrderId::new())).with_saga(SagaId::new())
}

pub fn money(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

pub fn address() -> Address {
    Address {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: Some("Flat 3".into()),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

pub fn stock_lines() -> Vec<StockLine> {
    vec![
        StockLine {
            sku: sku("BOOK-001"),
            quantity: 2,
        },
        StockLine {
            sku: sku("PEN.blue_2"),
            quantity: 1,
        },
    ]
}

pub fn order_placed() -> OrderPlaced {
    OrderPlaced {
        meta: meta(),
        customer_id: CustomerId::parse("ada@example.com").unwrap(),
        lines: vec![
            OrderLine {
                sku: sku("BOOK-001"),
                quantity: 2,
                unit_price: money(1999),
            },
            OrderLine {
                sku: sku("PEN.blue_2"),
                quantity: 1,
                unit_price: money(250),
            },
        ],
        total: money(4248),
        shipping_address: address(),
    }
}

/// Calls `$f::<T>(sample)` for every message type with its sample.
#[macro_export]
macro_rules! for_each_sample {
    ($f:ident) => {{
        use saga_contracts::*;
        use $crate::samples::*;
        $f(order_placed());
        $f(OrderApproved { meta: meta() });
        $f(OrderRejected {
            meta: meta(),
            reason: "payment declined: INSUFFICIENT_CREDIT".into(),
        });
        $f(ApproveOrder { meta: meta() });
        $f(RejectOrder {
            meta: meta(),
            reason: "out of stock".into(),
        });
        $f(ReserveStock {
            meta: meta(),
            lines: stock_lines(),
        });
        $f(ReleaseStock { meta: meta() });
        $f(StockReserved {
            meta: meta(),
            reservation_id: ReservationId::new(),
        });
        $f(StockUnavailable {
            meta: meta(),
            shortages: vec![Shortage {
                sku: sku("BOOK-001"),
                requested: 5,
                available: 2,
            }],
        });
        $f(StockReleased {
            meta: meta(),
            released: true,
        });
        $f(ChargePayment {
            meta: meta(),
            customer_id: CustomerId::parse("cust-42").unwrap(),
            amount: money(4248),
        });
        $f(RefundPayment { meta: meta() });
        $f(PaymentCharged {
            meta: meta(),
            payment_id: PaymentId::new(),
            amount: money(4248),
        });
        $f(PaymentDeclined {
            meta: meta(),
            reason: DeclineReason::CurrencyMismatch,
            detail: "account holds USD".into(),
        });
        $f(PaymentRefunded {
            meta: meta(),
            amount: money(0),
        });
        $f(ScheduleShipment {
            meta: meta(),
            address: address(),
            lines: stock_lines(),
        });
        $f(CancelShipment { meta: meta() });
        $f(ShipmentScheduled {
            meta: meta(),
            shipment_id: ShipmentId::new(),
        });
        $f(ShipmentRefused {
            meta: meta(),
            reason: "destination not served".into(),
        });
        $f(ShipmentCancelled {
            meta: meta(),
            cancelled: false,
        });
        $f(ShipmentDispatched {
            meta: meta(),
            shipment_id: ShipmentId::new(),
        });
        21usize
    }};
}
