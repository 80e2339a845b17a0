//! The errors of the codec layer: encoding, decoding and registration.

/// Why bytes could not be decoded into a message. Every kind of bad input has its own variant,
/// so a consumer can say in a dead letter exactly what was wrong.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty payload (a tombstone or a producer bug), expected the Confluent wire format")]
    Empty,
    #[error("first byte is {0:#04x}, expected the Confluent magic byte 0x00")]
    WrongMagicByte(u8),
    #[error("payload of {len} bytes ends before the message does")]
    Truncated { len: usize },
    #[error("schema id {0} is unknown to the schema registry")]
    UnknownSchemaId(u32),
    #[error("topic {topic} does not carry {found}")]
    UnexpectedType { topic: &'static str, found: String },
    #[error("payload does not match its schema: {0}")]
    InvalidAvro(String),
    #[error("schema registry: {0}")]
    Registry(String),
}

impl DecodeError {
    /// A transient error may succeed on retry (the registry was unreachable or failing); every
    /// other kind is a property of the bytes and will fail the same way forever, so it belongs
    /// in the dead letters at once.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::Registry(_))
    }
}

/// Why a message could not be encoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The registry could not give a schema id for the subject (unreachable, or it refused the
    /// schema).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The value does not fit its own schema (a bug in this crate; the drift test guards it).
    #[error("{full_name} does not fit its schema: {message}")]
    Avro {
        full_name: &'static str,
        message: String,
    },
}

impl EncodeError {
    pub fn is_transient(&self) -> bool {
        matches!(self, EncodeError::Registry(e) if e.is_transient())
    }
}

/// A registry call for a subject failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// The registry answered and said no: an incompatible or invalid schema. A service must not
    /// start with a contract the registry refuses.
    #[error("schema registry refused subject {subject}: {message} (error code {error_code})")]
    Refused {
        subject: String,
        error_code: u32,
        message: String,
    },
    /// The registry could not be reached or failed (5xx); worth retrying.
    #[error("schema registry unavailable for subject {subject}: {message}")]
    Unavailable { subject: String, message: String },
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }

    pub fn subject(&self) -> &str {
        match self {
            RegistryError::Refused { subject, .. } | RegistryError::Unavailable { subject, .. } => {
                subject
            }
        }
    }
}
