//! Stored order events across changes of their shape: every row of `order_events` records
//! the `schema_version` of its payload; before folding, replaying or answering `as_of`, an
//! older payload is raised step by step to the current shape here, and nowhere else.
//!
//! To change an event type: bump its entry in [`current_version`], add a step
//! `(type, from) => ...` to [`step`] that turns a payload of version `from` into `from + 1`,
//! and a test that builds the old shape by hand. Stored rows are never rewritten.
//! docs/order-service.md ("Evolving an order event") has the whole procedure, with the Avro
//! contract beside it.
//!
//! History:
//! - `OrderRejected` v2 (December 2026): the stored field `reason` became
//!   `rejection_reason`, the name the read model and the HTTP views use. The published Avro
//!   `OrderRejected` keeps `reason`: the stored event and the message contract evolve
//!   separately (`messages.rs` maps one to the other).

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpcastError {
    #[error("{type_name} v{version} is newer than this build knows (v{current})")]
    FromTheFuture {
        type_name: String,
        version: i32,
        current: i32,
    },
    #[error("{type_name} v{version} has no upcaster to v{}", version + 1)]
    MissingStep { type_name: String, version: i32 },
    #[error("{type_name} v{version} payload is not of that shape: {problem}")]
    Malformed {
        type_name: String,
        version: i32,
        problem: &'static str,
    },
}

/// The shape new events of `type_name` are written in.
pub fn current_version(type_name: &str) -> i32 {
    match type_name {
        "OrderRejected" => 2,
        _ => 1,
    }
}

/// `payload`, stored as `version` of `type_name`, in the current shape.
pub fn upcast(type_name: &str, version: i32, mut payload: Value) -> Result<Value, UpcastError> {
    let current = current_version(type_name);
    if version > current {
        return Err(UpcastError::FromTheFuture {
            type_name: type_name.to_owned(),
            version,
            current,
        });
    }
    for from in version..current {
        payload = step(type_name, from, payload)?;
    }
    Ok(payload)
}

/// One step: version `from` to `from + 1`.
fn step(type_name: &str, from: i32, payload: Value) -> Result<Value, UpcastError> {
    match (type_name, from) {
        ("OrderRejected", 1) => {
            let Value::Object(mut fields) = payload else {
                return Err(malformed(type_name, from, "not an object"));
            };
            let reason = fields
                .remove("reason")
                .ok_or_else(|| malformed(type_name, from, "no `reason`"))?;
            fields.insert("rejection_reason".into(), reason);
            Ok(Value::Object(fields))
        }
        _ => Err(UpcastError::MissingStep {
            type_name: type_name.to_owned(),
            version: from,
        }),
    }
}

fn malformed(type_name: &str, version: i32, problem: &'static str) -> UpcastError {
    UpcastError::Malformed {
        type_name: type_name.to_owned(),
        version,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderEvent;
    use serde_json::json;

    #[test]
    fn order_rejected_v1_as_stored_until_december_2026_decodes_as_the_current_event() {
        let stored_v1 = json!({"reason": "payment declined"});
        let current = upcast("OrderRejected", 1, stored_v1).unwrap();
        let event: OrderEvent =
            serde_json::from_value(json!({"type": "OrderRejected", "data": current})).unwrap();
        assert_eq!(
            event,
            OrderEvent::OrderRejected {
                reason: "payment declined".into()
            }
        );
    }

    #[test]
    fn current_shapes_pass_unchanged_and_future_or_broken_ones_are_refused() {
        let v2 = json!({"rejection_reason": "x"});
        assert_eq!(upcast("OrderRejected", 2, v2.clone()).unwrap(), v2);
        assert_eq!(upcast("OrderApproved", 1, json!({})).unwrap(), json!({}));
        assert!(matches!(
            upcast("OrderRejected", 3, v2),
            Err(UpcastError::FromTheFuture { .. })
        ));
        assert!(matches!(
            upcast("OrderRejected", 1, json!({"why": "x"})),
            Err(UpcastError::Malformed { .. })
        ));
    }

    #[test]
    fn what_is_written_now_is_the_current_version() {
        let event = OrderEvent::OrderRejected { reason: "x".into() };
        let tagged = serde_json::to_value(&event).unwrap();
        assert_eq!(tagged["data"], json!({"rejection_reason": "x"}));
        assert_eq!(current_version(event.type_name()), 2);
    }
}
