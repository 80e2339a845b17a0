//! Typed identifiers. A bare `Uuid` or `String` says nothing about what it identifies; these
//! newtypes make a mixed-up argument a compile error.
//!
//! The UUID ids always (de)serialize as the hyphenated string, whatever the format: Avro's
//! `uuid` logical type annotates a `string` here, and apache-avro's serde is not
//! "human readable", so `Uuid`'s own impl would emit 16 raw bytes that the schema rejects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Serde helpers that keep a `Uuid` a string in every format (see the module docs).
pub mod uuid_as_string {
    use super::*;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Uuid;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a UUID string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Uuid, E> {
                Uuid::parse_str(v).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Uuid, E> {
                Uuid::from_slice(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id: UUID v7, so ids sort by creation time (index-friendly).
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            pub const fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                uuid_as_string::serialize(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                uuid_as_string::deserialize(d).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An order; also the Kafka key of every message about it.
    OrderId
);
uuid_id!(
    /// One run of the orchestrator's saga for an order.
    SagaId
);
uuid_id!(
    /// One message (command or event); the deduplication key of the inbox.
    MessageId
);
uuid_id!(
    /// A payment made by the payment service.
    PaymentId
);
uuid_id!(
    /// A shipment scheduled by the shipping service.
    ShipmentId
);
uuid_id!(
    /// A stock reservation made by the inventory service.
    ReservationId
);

/// A string id failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long, at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} {value:?} contains the character {found:?}, which is not allowed")]
    InvalidChar {
        kind: &'static str,
        value: String,
        found: char,
    },
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $validate:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $validate($kind, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

fn validate_length(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = value.chars().count();
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    Ok(())
}

fn validate_sku(kind: &'static str, value: &str) -> Result<(), IdError> {
    validate_length(kind, value, 64)?;
    if let Some(found) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::InvalidChar {
            kind,
            value: value.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Customer ids come from outside (often an e-mail or an account number), so only the
/// length is bounded and control characters, which would corrupt logs and headers, refused.
fn validate_customer(kind: &'static str, value: &str) -> Result<(), IdError> {
    validate_length(kind, value, 128)?;
    if let Some(found) = value.chars().find(|c| c.is_control()) {
        return Err(IdError::InvalidChar {
            kind,
            value: value.to_owned(),
            found,
        });
    }
    Ok(())
}

string_id!(
    /// A customer, as named by the caller of the order API (opaque to the saga): 1-128
    /// characters, no control characters.
    CustomerId,
    "customer id",
    validate_customer
);
string_id!(
    /// A stock keeping unit: 1-64 characters of `[A-Za-z0-9._-]`.
    Sku,
    "SKU",
    validate_sku
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_are_strings_in_json_and_v7() {
        let id = OrderId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<OrderId>(&json).unwrap(), id);
        assert_eq!(id.to_string().parse::<OrderId>().unwrap(), id);
    }

    #[test]
    fn sku_validation() {
        assert!(Sku::parse("ABC-1_2.x").is_ok());
        assert_eq!(Sku::parse(""), Err(IdError::Empty { kind: "SKU" }));
        assert!(matches!(
            Sku::parse("a".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
        assert!(Sku::parse("a".repeat(64)).is_ok());
        assert!(matches!(
            Sku::parse("a b"),
            Err(IdError::InvalidChar { found: ' ', .. })
        ));
        assert!(serde_json::from_str::<Sku>("\"bad/sku\"").is_err());
        assert_eq!(
            serde_json::from_str::<Sku>("\"ok\"").unwrap().as_str(),
            "ok"
        );
    }
}
