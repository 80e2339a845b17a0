//! The traits every message type and every topic enum implement, and the catalogue of all
//! message types (used by registration, the drift test and the compatibility gate).

use std::fmt::Debug;

use apache_avro::Schema;
use apache_avro::types::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::common::Metadata;
use crate::error::DecodeError;

/// Every message type: one struct per `.avsc`, fields named exactly as in the schema.
pub trait Message: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// Full Avro record name, e.g. `com.example.saga.inventory.ReserveStock`.
    const FULL_NAME: &'static str;
    /// The topic this type is published on, e.g. `inventory.commands`.
    const TOPIC: &'static str;
    /// The `.avsc` text, exactly as in `schemas/` (what is registered).
    const SCHEMA_JSON: &'static str;
    /// Short record name, e.g. `ReserveStock` (the `message_type` Kafka header).
    const TYPE_NAME: &'static str;
    /// The enum of the topic this type is published on (what a consumer decodes into).
    type Topic: TopicMessage + From<Self>;
    /// The parsed schema (parsed once).
    fn schema() -> &'static Schema;
    fn meta(&self) -> &Metadata;
}

/// One enum per topic, with a variant per message type the topic carries.
pub trait TopicMessage: Sized + Debug + Send + Sync + 'static {
    const TOPIC: &'static str;
    /// Build from a decoded Avro value given the writer schema's full record name. The value is
    /// resolved against this crate's (reader) schema first, so fields added or removed by a
    /// compatible newer writer are handled by Avro's resolution rules.
    fn from_avro(full_name: &str, value: Value) -> Result<Self, DecodeError>;
    fn meta(&self) -> &Metadata;
    /// Short record name, e.g. `ReserveStock`.
    fn type_name(&self) -> &'static str;
    /// Full record name, e.g. `com.example.saga.inventory.ReserveStock`.
    fn full_name(&self) -> &'static str;
}

/// Static facts about one message type, for code that handles all of them generically.
#[derive(Debug, Clone, Copy)]
pub struct MessageType {
    pub full_name: &'static str,
    pub type_name: &'static str,
    pub topic: &'static str,
    /// Path relative to the repository root, e.g. `schemas/inventory/ReserveStock.avsc`.
    pub schema_path: &'static str,
    pub schema_json: &'static str,
    pub schema: fn() -> &'static Schema,
}

impl MessageType {
    pub const fn of<M: Message>(schema_path: &'static str) -> MessageType {
        MessageType {
            full_name: M::FULL_NAME,
            type_name: M::TYPE_NAME,
            topic: M::TOPIC,
            schema_path,
            schema_json: M::SCHEMA_JSON,
            schema: M::schema,
        }
    }

    /// The registry subject under TopicRecordNameStrategy: `<topic>-<full record name>`.
    pub fn subject(&self) -> String {
        subject(self.topic, self.full_name)
    }
}

/// The registry subject under TopicRecordNameStrategy: `<topic>-<full record name>`.
pub fn subject(topic: &str, full_name: &str) -> String {
    format!("{topic}-{full_name}")
}

/// Turn a decoded (writer) value into `M`: resolve against `M`'s schema, then deserialize.
pub fn from_avro_value<M: Message>(value: Value) -> Result<M, DecodeError> {
    let resolved = value
        .resolve(M::schema())
        .map_err(|e| DecodeError::InvalidAvro(format!("{}: {e}", M::FULL_NAME)))?;
    apache_avro::from_value::<M>(&resolved)
        .map_err(|e| DecodeError::InvalidAvro(format!("{}: {e}", M::FULL_NAME)))
}

/// Implements `Message` for each struct and defines the topic enum with `TopicMessage`.
macro_rules! topic {
    (
        $(#[$doc:meta])*
        enum $enum:ident = $topic:expr;
        dir = $dir:literal;
        namespace = $ns:literal;
        types = [$($ty:ident),+ $(,)?];
    ) => {
        $(
            impl $crate::message::Message for $ty {
                const FULL_NAME: &'static str = concat!($ns, ".", stringify!($ty));
                const TOPIC: &'static str = $topic;
                const SCHEMA_JSON: &'static str = include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/../../schemas/", $dir, "/", stringify!($ty), ".avsc"
                ));
                const TYPE_NAME: &'static str = stringify!($ty);
                type Topic = $enum;
                fn schema() -> &'static apache_avro::Schema {
                    static SCHEMA: std::sync::LazyLock<apache_avro::Schema> =
                        std::sync::LazyLock::new(|| {
                            // The schemas are compiled in and parsed by the tests, so this
                            // cannot fail in a tested build.
                            apache_avro::Schema::parse_str(<$ty as $crate::message::Message>::SCHEMA_JSON)
                                .expect(concat!("schemas/", $dir, "/", stringify!($ty), ".avsc must parse"))
                        });
                    &SCHEMA
                }
                fn meta(&self) -> &$crate::common::Metadata {
                    &self.meta
                }
            }

            impl From<$ty> for $enum {
                fn from(m: $ty) -> $enum {
                    $enum::$ty(m)
                }
            }
        )+

        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $($ty($ty),)+
        }

        impl $enum {
            /// Every message type this topic carries.
            pub const TYPES: &'static [$crate::message::MessageType] = &[
                $($crate::message::MessageType::of::<$ty>(
                    concat!("schemas/", $dir, "/", stringify!($ty), ".avsc")
                ),)+
            ];

            /// Encode whichever message this is (for code that holds the topic enum).
            pub async fn encode_with(
                &self,
                codec: &$crate::codec::Codec,
            ) -> Result<Vec<u8>, $crate::error::EncodeError> {
                match self {
                    $($enum::$ty(m) => codec.encode(m).await,)+
                }
            }
        }

        impl $crate::message::TopicMessage for $enum {
            const TOPIC: &'static str = $topic;

            fn from_avro(
                full_name: &str,
                value: apache_avro::types::Value,
            ) -> Result<Self, $crate::error::DecodeError> {
                $(
                    if full_name == <$ty as $crate::message::Message>::FULL_NAME {
                        return $crate::message::from_avro_value::<$ty>(value).map($enum::$ty);
                    }
                )+
                Err($crate::error::DecodeError::UnexpectedType {
                    topic: $topic,
                    found: full_name.to_owned(),
                })
            }

            fn meta(&self) -> &$crate::common::Metadata {
                match self {
                    $($enum::$ty(m) => &m.meta,)+
                }
            }

            fn type_name(&self) -> &'static str {
                match self {
                    $($enum::$ty(_) => stringify!($ty),)+
                }
            }

            fn full_name(&self) -> &'static str {
                match self {
                    $($enum::$ty(_) => <$ty as $crate::message::Message>::FULL_NAME,)+
                }
            }
        }
    };
}

pub(crate) use topic;
