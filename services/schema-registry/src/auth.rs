//! HTTP basic authentication of the registry's writes, the way Confluent's registry does it
//! (`authentication.method=BASIC`): registering a schema, deleting a subject or a version
//! and changing a compatibility level need `Authorization: Basic <user:password>`.
//!
//! Reads (schemas by id, subjects, versions, levels) and the two POSTs that change nothing
//! (looking a schema up, testing compatibility) stay open: every consumer needs them to
//! decode, and what they reveal is the schemas, not data. Confluent protects reads too
//! when basic auth is on; put the registry behind a gateway that does if schemas are
//! confidential (docs/security.md).
//!
//! Without a configured password every write is refused (403): a forgotten secret closes
//! the door instead of opening it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use saga_service_kit::config::Secret;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The user name the local stack and docker-compose use.
pub const DEFAULT_USERNAME: &str = "registry";

/// Passwords shorter than this are refused at start: a short secret is guessable over HTTP.
pub const MIN_PASSWORD_LEN: usize = 12;

/// `auth` section: `auth.username` (default `registry`), `auth.password`
/// (env `APP_AUTH__USERNAME`, `APP_AUTH__PASSWORD`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    /// Unset means every write is refused.
    pub password: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            username: DEFAULT_USERNAME.to_owned(),
            password: None,
        }
    }
}

impl AuthConfig {
    pub fn with_password(password: impl Into<String>) -> Self {
        Self {
            password: Some(Secret::new(password)),
            ..Self::default()
        }
    }

    /// `http://host:port` with this credential as user info (`http://user:pw@host:port`),
    /// which reqwest, the services' codec and curl send as basic auth. For tests and tools
    /// (user name and password must not need percent-encoding).
    pub fn url_with_credentials(&self, base: &str) -> String {
        match (&self.password, base.split_once("://")) {
            (Some(p), Some((scheme, rest))) => {
                format!("{scheme}://{}:{}@{rest}", self.username, p.expose())
            }
            _ => base.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("auth.password must be at least {MIN_PASSWORD_LEN} characters")]
pub struct WeakPassword;

/// The check, cheap to clone into the router.
#[derive(Clone)]
pub struct WriteAuth {
    /// SHA-256 of `user:password`: digests are compared, so response times do not reveal how
    /// much of a guess was right.
    digest: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for WriteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAuth")
            .field("configured", &self.digest.is_some())
            .finish()
    }
}

impl WriteAuth {
    pub fn new(cfg: &AuthConfig) -> Result<Self, WeakPassword> {
        let digest = match &cfg.password {
            None => {
                tracing::warn!("auth.password is not set: every write to the registry is refused");
                None
            }
            Some(p) if p.expose().len() < MIN_PASSWORD_LEN => return Err(WeakPassword),
            Some(p) => Some(Arc::new(digest(&format!(
                "{}:{}",
                cfg.username,
                p.expose()
            )))),
        };
        Ok(Self { digest })
    }

    /// `router` with every one of its routes behind the check (unknown paths still 404).
    pub fn protect<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        router.route_layer(middleware::from_fn_with_state(self.clone(), check))
    }

    fn verify(&self, authorization: Option<&HeaderValue>) -> Result<(), Refusal> {
        let Some(expected) = &self.digest else {
            return Err(Refusal::NotConfigured);
        };
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(basic_credentials)
            .ok_or(Refusal::Missing)?;
        if digest(&presented) == **expected {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Missing,
    Invalid,
    NotConfigured,
}

/// problem+json (as every error of the suite's own APIs), carrying Confluent's
/// `error_code` and `message` too so that registry clients that read those still can.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code, detail) = match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                40101,
                "registry write: send Authorization: Basic <user:password>",
            ),
            Refusal::Invalid => (
                StatusCode::UNAUTHORIZED,
                40101,
                "the registry credentials are not valid",
            ),
            Refusal::NotConfigured => (
                StatusCode::FORBIDDEN,
                40301,
                "registry writes are disabled: auth.password is not set",
            ),
        };
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "error_code": code,
            "message": detail,
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(saga_service_kit::problem::CONTENT_TYPE),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"schema-registry\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

async fn check(State(auth): State<WriteAuth>, request: Request, next: Next) -> Response {
    match auth.verify(request.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                ?refusal,
                method = %request.method(),
                path = %request.uri().path(),
                "registry write refused"
            );
            refusal.into_response()
        }
    }
}

/// `user:password` of `Basic <base64>` (scheme case-insensitive, RFC 7617).
fn basic_credentials(value: &str) -> Option<String> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(decoded).ok().filter(|s| s.contains(':'))
}

fn digest(credentials: &str) -> [u8; 32] {
    Sha256::digest(credentials.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_as_a_whole() {
        let auth = WriteAuth::new(&AuthConfig::with_password("correct horse battery")).unwrap();
        let basic = |s: &str| {
            let v = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            );
            HeaderValue::from_str(&v).unwrap()
        };
        assert_eq!(
            auth.verify(Some(&basic("registry:correct horse battery"))),
            Ok(())
        );
        assert_eq!(
            auth.verify(Some(&basic("other:correct horse battery"))),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            auth.verify(Some(&basic("registry:wrong"))),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            auth.verify(Some(&HeaderValue::from_static("Bearer x"))),
            Err(Refusal::Missing)
        );
        assert_eq!(auth.verify(None), Err(Refusal::Missing));
        let closed = WriteAuth::new(&AuthConfig::default()).unwrap();
        assert_eq!(
            closed.verify(Some(&basic("registry:anything-at-all"))),
            Err(Refusal::NotConfigured)
        );
        assert!(WriteAuth::new(&AuthConfig::with_password("short")).is_err());
    }
}
