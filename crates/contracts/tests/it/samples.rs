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

/// Calls `$f($args.., sample) $suffix` for every message type with its sample, e.g.
/// `for_each_sample!(check;)` or `for_each_sample!(round_trip, &codec; .await)`.
#[macro_export]
macro_rules! for_each_sample {
    ($f:ident $(, $arg:expr)* ; $($suffix:tt)*) => {{
        use saga_contracts::*;
        use $crate::samples::*;
        $f($($arg,)* order_placed()) $($suffix)*;
        $f($($arg,)* OrderApproved { meta: meta() }) $($suffix)*;
        $f($($arg,)* OrderRejected {
            meta: meta(),
            reason: "payment declined: INSUFFICIENT_CREDIT".into(),
        }) $($suffix)*;
        $f($($arg,)* ApproveOrder { meta: meta() }) $($suffix)*;
        $f($($arg,)* RejectOrder {
            meta: meta(),
            reason: "out of stock".into(),
        }) $($suffix)*;
        $f($($arg,)* ReserveStock {
            meta: meta(),
            lines: stock_lines(),
        }) $($suffix)*;
        $f($($arg,)* ReleaseStock { meta: meta() }) $($suffix)*;
        $f($($arg,)* StockReserved {
            meta: meta(),
            reservation_id: ReservationId::new(),
        }) $($suffix)*;
        $f($($arg,)* StockUnavailable {
            meta: meta(),
            shortages: vec![Shortage {
                sku: sku("BOOK-001"),
                requested: 5,
                available: 2,
            }],
        }) $($suffix)*;
        $f($($arg,)* StockReleased {
            meta: meta(),
            released: true,
        }) $($suffix)*;
        $f($($arg,)* ChargePayment {
            meta: meta(),
            customer_id: CustomerId::parse("cust-42").unwrap(),
            amount: money(4248),
        }) $($suffix)*;
        $f($($arg,)* RefundPayment { meta: meta() }) $($suffix)*;
        $f($($arg,)* PaymentCharged {
            meta: meta(),
            payment_id: PaymentId::new(),
            amount: money(4248),
        }) $($suffix)*;
        $f($($arg,)* PaymentDeclined {
            meta: meta(),
            reason: DeclineReason::CurrencyMismatch,
            detail: "account holds USD".into(),
        }) $($suffix)*;
        $f($($arg,)* PaymentRefunded {
            meta: meta(),
            amount: money(0),
        }) $($suffix)*;
        $f($($arg,)* ScheduleShipment {
            meta: meta(),
            address: address(),
            lines: stock_lines(),
        }) $($suffix)*;
        $f($($arg,)* CancelShipment { meta: meta() }) $($suffix)*;
        $f($($arg,)* ShipmentScheduled {
            meta: meta(),
            shipment_id: ShipmentId::new(),
        }) $($suffix)*;
        $f($($arg,)* ShipmentRefused {
            meta: meta(),
            reason: "destination not served".into(),
        }) $($suffix)*;
        $f($($arg,)* ShipmentCancelled {
            meta: meta(),
            cancelled: false,
        }) $($suffix)*;
        $f($($arg,)* ShipmentDispatched {
            meta: meta(),
            shipment_id: ShipmentId::new(),
        }) $($suffix)*;
        $f($($arg,)* OrderCommandRefused {
            meta: meta(),
            command: "ApproveOrder".into(),
            reason: "order is REJECTED".into(),
        }) $($suffix)*;
        $f($($arg,)* InventoryCommandRefused {
            meta: meta(),
            command: "ReserveStock".into(),
            reason: "quantity for SKU BOOK-001 must be between 1 and 2147483647, got 0".into(),
        }) $($suffix)*;
        $f($($arg,)* PaymentCommandRefused {
            meta: meta(),
            command: "RefundPayment".into(),
            reason: "the refund overflows the account balance".into(),
        }) $($suffix)*;
        24usize
    }};
}
