//! The Confluent Schema Registry REST API (the subset listed in docs/schema-registry.md).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use apache_avro::Schema;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::WriteAuth;
use crate::canonical::canonical_form;
use crate::compat::Level;
use crate::error::{CONTENT_TYPE, RegistryError};
use crate::store::{NewSchema, Store, VersionSpec};

type Result<T> = std::result::Result<T, RegistryError>;

/// The API; the routes that change the registry (registering, deleting, setting a
/// compatibility level) behind `auth` (crate::auth).
pub fn router(store: Store, auth: &WriteAuth) -> Router {
    let reads = Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/subjects", get(subjects))
        // Looking a schema up and testing compatibility are POSTs that change nothing.
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_with_subject),
        )
        .route("/config", get(get_global_config))
        .route("/config/{subject}", get(get_subject_config))
        .route("/mode", get(|| async { ok(json!({"mode": "READWRITE"})) }));
    let writes = Router::new()
        .route("/subjects/{subject}", delete(delete_subject))
        .route("/subjects/{subject}/versions", post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            delete(delete_version),
        )
        .route("/config", put(put_global_config))
        .route(
            "/config/{subject}",
            put(put_subject_config).delete(delete_subject_config),
        );
    reads
        .merge(auth.protect(writes))
        .fallback(|| async { RegistryError::RouteNotFound })
        .method_not_allowed_fallback(|| async {
            let body = json!({"error_code": 405, "message": "HTTP 405 Method Not Allowed"});
            with_content_type((StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response())
        })
        .with_state(store)
}

fn with_content_type(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// 200 with Confluent's content type.
fn ok(body: Value) -> Response {
    with_content_type(axum::Json(body).into_response())
}

/// A stored schema's text, which is itself JSON, as the whole response body.
fn raw(schema: String) -> Response {
    with_content_type(schema.into_response())
}

/// JSON body accepted with any of Confluent's content types (or none); decoding failures
/// become Confluent-style errors.
pub struct Body<T>(pub T);

const ACCEPTED_TYPES: &[&str] = &[
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = RegistryError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !ACCEPTED_TYPES.contains(&essence.as_str()) {
                return Err(RegistryError::UnsupportedMediaType(ct.to_owned()));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    RegistryError::TooLarge(saga_service_kit::http::DEFAULT_BODY_LIMIT)
                } else {
                    RegistryError::BadRequest(e.body_text())
                }
            })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            if e.is_data() {
                RegistryError::Unprocessable(format!("Unprocessable entity: {e}"))
            } else {
                RegistryError::BadRequest(format!("Malformed JSON: {e}"))
            }
        })
    }
}

/// `Path<T>` whose rejection (e.g. invalid UTF-8 after percent-decoding) is a Confluent error.
pub struct RPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for RPath<T> {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| RPath(v))
            .map_err(|e| RegistryError::BadRequest(e.body_text()))
    }
}

/// `Query<T>` whose rejection is a Confluent error.
pub struct RQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for RQuery<T> {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| RQuery(v))
            .map_err(|e| RegistryError::BadRequest(e.body_text()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    schema: Option<String>,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaRequest {
    /// Validates the request and computes the schema's canonical form.
    fn into_new_schema(self) -> Result<NewSchema> {
        match self.schema_type.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("AVRO") => {}
            Some(other) => {
                return Err(RegistryError::InvalidSchema(format!(
                    "schema type {other} is not supported by this registry; only AVRO is"
                )));
            }
        }
        if !self.references.is_empty() {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported by this registry".into(),
            ));
        }
        let text = self
            .schema
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                RegistryError::InvalidSchema("the \"schema\" field is required".into())
            })?;
        parse_avro(&text)?;
        let canonical =
            canonical_form(&text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let parsed = parse_avro(&canonical)?;
        Ok(NewSchema { canonical, parsed })
    }
}

/// apache-avro's parser, made panic-proof: a panic on hostile input must not take the
/// connection down without an answer.
fn parse_avro(text: &str) -> Result<Schema> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| Schema::parse_str(text))) {
        Ok(Ok(schema)) => Ok(schema),
        Ok(Err(e)) => Err(RegistryError::InvalidSchema(e.to_string())),
        Err(_) => Err(RegistryError::InvalidSchema(
            "the schema could not be parsed".into(),
        )),
    }
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_id(raw: &str) -> Result<i32> {
    raw.parse::<i32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(RegistryError::SchemaNotFound)
}

async fn schema_by_id(State(store): State<Store>, RPath(id): RPath<String>) -> Result<Response> {
    let schema = store.schema_by_id(parse_id(&id)?).await?;
    Ok(ok(json!({ "schema": schema })))
}

async fn raw_schema_by_id(
    State(store): State<Store>,
    RPath(id): RPath<String>,
) -> Result<Response> {
    Ok(raw(store.schema_by_id(parse_id(&id)?).await?))
}

async fn subjects_by_id(State(store): State<Store>, RPath(id): RPath<String>) -> Result<Response> {
    let mut subjects: Vec<String> = store
        .usages(parse_id(&id)?)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

async fn versions_by_id(State(store): State<Store>, RPath(id): RPath<String>) -> Result<Response> {
    let usages: Vec<Value> = store
        .usages(parse_id(&id)?)
        .await?
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(ok(json!(usages)))
}

async fn subjects(
    State(store): State<Store>,
    RQuery(q): RQuery<HashMap<String, String>>,
) -> Result<Response> {
    Ok(ok(json!(store.subjects(flag(&q, "deleted")).await?)))
}

async fn versions(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    RQuery(q): RQuery<HashMap<String, String>>,
) -> Result<Response> {
    Ok(ok(json!(
        store.versions(&subject, flag(&q, "deleted")).await?
    )))
}

async fn register(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    Body(req): Body<SchemaRequest>,
) -> Result<Response> {
    let schema = req.into_new_schema()?;
    let id = store.register(&subject, &schema).await?;
    Ok(ok(json!({ "id": id })))
}

async fn lookup(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    Body(req): Body<SchemaRequest>,
) -> Result<Response> {
    let schema = req.into_new_schema()?;
    let found = store.lookup(&subject, &schema).await?;
    Ok(ok(json!({
        "subject": found.subject,
        "id": found.id,
        "version": found.version,
        "schema": found.schema,
    })))
}

async fn version(
    State(store): State<Store>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let found = store
        .version(&subject, VersionSpec::parse(&version)?)
        .await?;
    Ok(ok(json!({
        "subject": found.subject,
        "id": found.id,
        "version": found.version,
        "schema": found.schema,
    })))
}

async fn raw_version(
    State(store): State<Store>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let found = store
        .version(&subject, VersionSpec::parse(&version)?)
        .await?;
    Ok(raw(found.schema))
}

async fn delete_subject(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    RQuery(q): RQuery<HashMap<String, String>>,
) -> Result<Response> {
    let versions = store
        .delete_subject(&subject, flag(&q, "permanent"))
        .await?;
    Ok(ok(json!(versions)))
}

async fn delete_version(
    State(store): State<Store>,
    Path((subject, version)): Path<(String, String)>,
    RQuery(q): RQuery<HashMap<String, String>>,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    let deleted = store
        .delete_version(&subject, spec, flag(&q, "permanent"))
        .await?;
    Ok(ok(json!(deleted)))
}

fn compatibility_response(messages: Vec<String>, verbose: bool) -> Response {
    if verbose {
        ok(json!({ "is_compatible": messages.is_empty(), "messages": messages }))
    } else {
        ok(json!({ "is_compatible": messages.is_empty() }))
    }
}

async fn compatibility_with_version(
    State(store): State<Store>,
    Path((subject, version)): Path<(String, String)>,
    RQuery(q): RQuery<HashMap<String, String>>,
    Body(req): Body<SchemaRequest>,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    let schema = req.into_new_schema()?;
    let messages = store
        .test_compatibility(&subject, Some(spec), &schema)
        .await?;
    Ok(compatibility_response(messages, flag(&q, "verbose")))
}

async fn compatibility_with_subject(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    RQuery(q): RQuery<HashMap<String, String>>,
    Body(req): Body<SchemaRequest>,
) -> Result<Response> {
    let schema = req.into_new_schema()?;
    let messages = store.test_compatibility(&subject, None, &schema).await?;
    Ok(compatibility_response(messages, flag(&q, "verbose")))
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

fn parse_level(req: ConfigRequest) -> Result<Level> {
    req.compatibility
        .and_then(|s| s.parse().ok())
        .ok_or(RegistryError::InvalidCompatibilityLevel)
}

async fn get_global_config(State(store): State<Store>) -> Result<Response> {
    let level = store.global_level().await?;
    Ok(ok(json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_global_config(
    State(store): State<Store>,
    Body(req): Body<ConfigRequest>,
) -> Result<Response> {
    let level = parse_level(req)?;
    store.set_level(None, level).await?;
    Ok(ok(json!({ "compatibility": level.as_str() })))
}

async fn get_subject_config(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    RQuery(q): RQuery<HashMap<String, String>>,
) -> Result<Response> {
    let level = match store.level(Some(&subject)).await? {
        Some(level) => level,
        None if flag(&q, "defaultToGlobal") => store.global_level().await?,
        None => return Err(RegistryError::SubjectConfigNotFound(subject)),
    };
    Ok(ok(json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_subject_config(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
    Body(req): Body<ConfigRequest>,
) -> Result<Response> {
    let level = parse_level(req)?;
    store.set_level(Some(&subject), level).await?;
    Ok(ok(json!({ "compatibility": level.as_str() })))
}

async fn delete_subject_config(
    State(store): State<Store>,
    RPath(subject): RPath<String>,
) -> Result<Response> {
    let previous = store.delete_level(&subject).await?;
    Ok(ok(json!({ "compatibilityLevel": previous.as_str() })))
}
