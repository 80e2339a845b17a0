//! The Avro codec in the Confluent wire format (`0x00`, 4-byte big-endian schema id, Avro
//! binary), over the schema registry through `schema_registry_converter`.
//!
//! - Subjects follow TopicRecordNameStrategy (`<topic>-<full record name>`) because several
//!   record types share a topic and each evolves under its own subject.
//! - Encoding posts this crate's schema to its subject (the registry answers with the existing
//!   id, or registers it after its compatibility check) and caches the id per subject, so a
//!   writer always writes with the schema its struct was checked against, never with a newer
//!   "latest" it does not know.
//! - Decoding checks the wire header itself (so each kind of bad input gets its own error),
//!   fetches the writer schema by id (cached), decodes with it, then resolves the value against
//!   this crate's reader schema before deserializing.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::compat::{CompatConfig, Mode};
use crate::error::{DecodeError, EncodeError, RegistryError};
use crate::message::{Message, MessageType, TopicMessage, subject};

/// Encoder + decoder over the schema registry with schema-id caching. Cheap to clone.
#[derive(Clone)]
pub struct Codec {
    inner: Arc<Inner>,
}

struct Inner {
    /// Without user info: the credential lives in `credentials` only, never in a log line.
    url: String,
    credentials: Option<Credentials>,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    /// For the one call the converter does not make: setting a subject's compatibility mode.
    http: reqwest::Client,
}

/// The modes the gate enforces, compiled in so registration applies the same ones.
static MODES: std::sync::LazyLock<CompatConfig> = std::sync::LazyLock::new(|| {
    // A test parses this file, so the fallback is never used by a tested build.
    CompatConfig::parse(include_str!("../../../schemas/compatibility.toml")).unwrap_or_default()
});

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("registry_url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// The registry's basic-auth credential (its writes need one, docs/security.md).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// `http://user:pw@host:port/` -> (`http://host:port`, the credential), percent-decoded.
fn split_credentials(registry_url: &str) -> (String, Option<Credentials>) {
    let trimmed = registry_url.trim_end_matches('/');
    let Ok(mut url) = reqwest::Url::parse(trimmed) else {
        return (trimmed.to_owned(), None);
    };
    if url.username().is_empty() {
        return (trimmed.to_owned(), None);
    }
    let decode = |s: &str| percent_decode(s);
    let credentials = Credentials {
        username: decode(url.username()),
        password: decode(url.password().unwrap_or_default()),
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (
        url.as_str().trim_end_matches('/').to_owned(),
        Some(credentials),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Codec {
    /// A codec for the registry at `registry_url` (e.g. `http://127.0.0.1:18081`). A
    /// credential in the URL's user info (`http://user:pw@host:port`) is sent as basic auth.
    /// Nothing is contacted until the first call.
    pub fn new(registry_url: &str) -> Codec {
        let (url, credentials) = split_credentials(registry_url);
        Self::build(url, credentials)
    }

    /// A codec that authenticates to the registry with `credentials` (basic auth), as the
    /// services do with their `registry.username` / `registry.password`.
    pub fn with_credentials(registry_url: &str, credentials: Option<Credentials>) -> Codec {
        let (url, in_url) = split_credentials(registry_url);
        Self::build(url, credentials.or(in_url))
    }

    fn build(url: String, credentials: Option<Credentials>) -> Codec {
        // A bounded timeout turns a hung registry into a transient error instead of a stuck
        // consumer; building only fails on TLS setup, which plain HTTP does not need.
        let mut builder = SrSettings::new_builder(url.clone());
        builder.set_timeout(Duration::from_secs(10)).no_proxy();
        if let Some(c) = &credentials {
            builder.set_basic_authorization(&c.username, Some(&c.password));
        }
        let settings = builder
            .build()
            .unwrap_or_else(|_| SrSettings::new(url.clone()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Codec {
            inner: Arc::new(Inner {
                encoder: AvroEncoder::new(settings.clone()),
                decoder: AvroDecoder::new(settings),
                url,
                credentials,
                http,
            }),
        }
    }

    pub fn registry_url(&self) -> &str {
        &self.inner.url
    }

    /// Encode `msg` in the Confluent wire format under its subject's schema id.
    pub async fn encode<M: Message>(&self, msg: &M) -> Result<Vec<u8>, EncodeError> {
        let strategy = strategy(M::TOPIC, M::FULL_NAME, M::SCHEMA_JSON);
        // Resolve the id first so registry failures and serialization failures stay apart.
        self.schema_id(M::TOPIC, M::FULL_NAME, &strategy).await?;
        self.inner
            .encoder
            .encode_struct(msg, &strategy)
            .await
            .map_err(|e| EncodeError::Avro {
                full_name: M::FULL_NAME,
                message: describe(&e),
            })
    }

    /// Decode bytes from topic `T::TOPIC` into its enum. Never panics on bad input.
    pub async fn decode<T: TopicMessage>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (id, body) = split_header(bytes)?;
        let writer = self.inner.decoder.get_schema(id).await.map_err(|e| {
            let err = decode_registry_error(id, &e);
            if err.is_transient() {
                // The converter caches non-retriable failures (a 500 included) forever; a
                // transient one must be retried on the next message.
                self.inner.decoder.remove_errors_from_cache();
            }
            err
        })?;
        let full_name = match &writer.parsed {
            Schema::Record(r) => r.name.fullname(None),
            other => {
                return Err(DecodeError::UnexpectedType {
                    topic: T::TOPIC,
                    found: format!(
                        "a non-record schema ({:?})",
                        apache_avro::schema::SchemaKind::from(other)
                    ),
                });
            }
        };
        let value = decode_body(&writer.parsed, bytes.len(), body)?;
        T::from_avro(&full_name, value)
    }

    /// Decode any payload in the wire format through the registry, whatever its topic: the
    /// writer schema's full name and the value as JSON. For tools that show messages (the
    /// operator console's dead letters), not for handlers, which want typed messages.
    pub async fn decode_json(
        &self,
        bytes: &[u8],
    ) -> Result<(u32, String, serde_json::Value), DecodeError> {
        let (id, body) = split_header(bytes)?;
        let writer = self.inner.decoder.get_schema(id).await.map_err(|e| {
            let err = decode_registry_error(id, &e);
            if err.is_transient() {
                self.inner.decoder.remove_errors_from_cache();
            }
            err
        })?;
        let name = match &writer.parsed {
            Schema::Record(r) => r.name.fullname(None),
            other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)),
        };
        let value = decode_body(&writer.parsed, bytes.len(), body)?;
        let json = serde_json::Value::try_from(value)
            .map_err(|e| DecodeError::InvalidAvro(e.to_string()))?;
        Ok((id, name, json))
    }

    /// Register the schema of every message type (at service start). A schema the registry
    /// refuses is an error naming the subject and the registry's message.
    pub async fn register_all(&self) -> Result<(), RegistryError> {
        self.register(crate::ALL_TYPES.iter().flat_map(|t| t.iter()))
            .await
    }

    /// Register the schemas of the given message types, e.g. `InventoryEvent::TYPES`. Each
    /// subject first gets the compatibility mode `schemas/compatibility.toml` gives it, so the
    /// registry enforces what the compatibility gate checks.
    pub async fn register<'a>(
        &self,
        types: impl IntoIterator<Item = &'a MessageType>,
    ) -> Result<(), RegistryError> {
        for t in types {
            let mode = MODES.mode_for(t.full_name, Some(t.topic));
            self.set_mode(&t.subject(), mode).await?;
            let strategy = strategy(t.topic, t.full_name, t.schema_json);
            self.schema_id(t.topic, t.full_name, &strategy).await?;
        }
        Ok(())
    }

    /// The registry id of this crate's schema for `M` (registering it when new).
    pub async fn schema_id_of<M: Message>(&self) -> Result<u32, RegistryError> {
        let strategy = strategy(M::TOPIC, M::FULL_NAME, M::SCHEMA_JSON);
        self.schema_id(M::TOPIC, M::FULL_NAME, &strategy).await
    }

    /// `PUT /config/{subject}`.
    async fn set_mode(&self, subject: &str, mode: Mode) -> Result<(), RegistryError> {
        let url = format!("{}/config/{}", self.inner.url, subject.replace('/', "%2F"));
        let mut request = self.inner.http.put(url);
        if let Some(c) = &self.inner.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(format!(r#"{{"compatibility":"{mode}"}}"#))
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable {
                subject: subject.to_owned(),
                message: e.to_string(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v["message"].as_str())
            .unwrap_or(&body)
            .to_owned();
        if status.is_server_error() {
            return Err(RegistryError::Unavailable {
                subject: subject.to_owned(),
                message: format!("setting compatibility {mode}: {status}: {message}"),
            });
        }
        Err(RegistryError::Refused {
            subject: subject.to_owned(),
            error_code: parsed
                .as_ref()
                .and_then(|v| v["error_code"].as_u64())
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(u32::from(status.as_u16())),
            message: format!("setting compatibility {mode}: {message}"),
        })
    }

    async fn schema_id(
        &self,
        topic: &str,
        full_name: &str,
        strategy: &SubjectNameStrategy,
    ) -> Result<u32, RegistryError> {
        let subject = subject(topic, full_name);
        match self
            .inner
            .encoder
            .get_schema_and_id(&subject, strategy.clone())
            .await
        {
            Ok(schema) => Ok(schema.id),
            Err(e) => {
                // Otherwise the converter would replay this failure from its cache forever,
                // even after the registry recovers or the subject's mode is changed.
                self.inner.encoder.remove_errors_from_cache();
                Err(registry_error(subject, &e))
            }
        }
    }
}

fn strategy(topic: &str, full_name: &str, schema_json: &str) -> SubjectNameStrategy {
    SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.to_owned(),
        SuppliedSchema::new(
            Some(full_name.to_owned()),
            SchemaType::Avro,
            schema_json.to_owned(),
        ),
    )
}

/// Check the Confluent header: returns the schema id and the Avro body.
pub fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [] => Err(DecodeError::Empty),
        [magic, ..] if *magic != 0 => Err(DecodeError::WrongMagicByte(*magic)),
        [_, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        short => Err(DecodeError::Truncated { len: short.len() }),
    }
}

/// Decode an Avro body with its writer schema; the whole body must be consumed.
fn decode_body(
    writer: &Schema,
    total_len: usize,
    body: &[u8],
) -> Result<apache_avro::types::Value, DecodeError> {
    let mut reader = body;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(writer)
        .build()
        .and_then(|r| r.read_value(&mut reader))
        .map_err(|e| {
            if is_eof(&e) {
                DecodeError::Truncated { len: total_len }
            } else {
                DecodeError::InvalidAvro(e.to_string())
            }
        })?;
    if !reader.is_empty() {
        return Err(DecodeError::InvalidAvro(format!(
            "{} bytes left over after the message (of {total_len})",
            reader.len()
        )));
    }
    Ok(value)
}

/// Whether an Avro error was caused by running out of input.
fn is_eof(e: &apache_avro::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == ErrorKind::UnexpectedEof
        {
            return true;
        }
        source = err.source();
    }
    // Some decode paths report the short read only in the message.
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unexpected end of file") || text.contains("unexpectedeof")
}

fn raw_error(e: &SRCError) -> Option<&RawError> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<RawError>())
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

fn is_server_failure(e: &SRCError) -> bool {
    e.retriable
        || e.error.contains("status 5")
        || raw_error(e).is_some_and(|r| r.error_code >= 50000 || (500..600).contains(&r.error_code))
}

fn registry_error(subject: String, e: &SRCError) -> RegistryError {
    if is_server_failure(e) {
        return RegistryError::Unavailable {
            subject,
            message: describe(e),
        };
    }
    match raw_error(e) {
        Some(raw) => RegistryError::Refused {
            subject,
            error_code: raw.error_code,
            message: raw.message.clone(),
        },
        None => RegistryError::Refused {
            subject,
            error_code: 0,
            message: describe(e),
        },
    }
}

fn decode_registry_error(id: u32, e: &SRCError) -> DecodeError {
    let not_found = raw_error(e).is_some_and(|r| r.error_code == 40403 || r.error_code == 404)
        || e.error.contains("status 404");
    if not_found {
        DecodeError::UnknownSchemaId(id)
    } else {
        DecodeError::Registry(describe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_are_specific() {
        assert_eq!(split_header(&[]), Err(DecodeError::Empty));
        assert_eq!(
            split_header(&[1, 0, 0, 0, 1, 2]),
            Err(DecodeError::WrongMagicByte(1))
        );
        assert_eq!(
            split_header(&[0, 0, 0]),
            Err(DecodeError::Truncated { len: 3 })
        );
        assert_eq!(split_header(&[0, 0, 0, 1, 2, 9]), Ok((258, &[9u8][..])));
        assert_eq!(split_header(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
    }
}
