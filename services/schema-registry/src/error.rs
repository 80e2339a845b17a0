//! Errors in Confluent's shape: `{"error_code": N, "message": "..."}` with the HTTP status
//! Confluent uses for N, and its content type.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(i32),
    #[error("Schema {0} not found")]
    SchemaIdNotFound(i32),
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i32),
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, i32),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {details:?}"
    )]
    Incompatible {
        subject: String,
        details: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("Request body larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("Unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    #[error("Error in the backend data store")]
    Storage(#[from] sqlx::Error),
}

impl RegistryError {
    /// Confluent's `error_code`.
    pub fn code(&self) -> u32 {
        use RegistryError::*;
        match self {
            SubjectNotFound(_) => 40401,
            VersionNotFound(_) => 40402,
            SchemaIdNotFound(_) | SchemaNotFound => 40403,
            SubjectSoftDeleted(_) => 40404,
            SubjectNotSoftDeleted(_) => 40405,
            VersionSoftDeleted(..) => 40406,
            VersionNotSoftDeleted(..) => 40407,
            SubjectConfigNotFound(_) => 40408,
            Incompatible { .. } => 409,
            InvalidSchema(_) => 42201,
            InvalidVersion(_) => 42202,
            InvalidCompatibilityLevel => 42203,
            BadRequest(_) => 400,
            Unprocessable(_) => 422,
            TooLarge(_) => 413,
            UnsupportedMediaType(_) => 415,
            RouteNotFound => 404,
            Storage(_) => 50001,
        }
    }

    pub fn status(&self) -> StatusCode {
        let code = self.code();
        let http = if code >= 1000 { code / 100 } else { code };
        StatusCode::from_u16(http as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        if let RegistryError::Storage(e) = &self {
            // The client learns only that storage failed; the cause stays in the log.
            tracing::error!(error = %e, "storage failure");
        }
        let body = json!({ "error_code": self.code(), "message": self.to_string() });
        let mut response = (self.status(), axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}
