//! The admin credential: operations that change what the saga decides on (stock, credit,
//! prices, projection rebuilds, operator actions on sagas) require
//! `Authorization: Bearer <auth.admin_token>`. Each service puts its admin routes in one
//! sub-router and wraps it with [`AdminAuth::protect`], so the check is written once, here.
//!
//! Customer-facing reads stay open: the suite has no notion of a customer login. A gateway in
//! front of it must authenticate customers and restrict them to their own orders and account
//! (docs/security.md).
//!
//! Without a configured token the admin routes refuse everything (403): a forgotten secret
//! must close the door, not open it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::problem::Problem;

/// `auth` section: `auth.admin_token` (env `APP_AUTH__ADMIN_TOKEN`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The bearer token of admin operations; unset means admin operations are refused.
    pub admin_token: Option<Secret>,
}

impl AuthConfig {
    pub fn with_admin_token(token: impl Into<String>) -> Self {
        Self {
            admin_token: Some(Secret::new(token)),
        }
    }
}

/// The check of [`AuthConfig`], cheap to clone into every router.
#[derive(Clone)]
pub struct AdminAuth {
    /// SHA-256 of the token: comparing digests takes the same time whatever prefix of the
    /// token a guess gets right, so response times do not leak it.
    digest: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("configured", &self.digest.is_some())
            .finish()
    }
}

/// Tokens shorter than this are refused at start: a short secret is guessable over HTTP.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("auth.admin_token must be at least {MIN_TOKEN_LEN} characters")]
pub struct WeakToken;

impl AdminAuth {
    pub fn new(cfg: &AuthConfig) -> Result<Self, WeakToken> {
        let digest = match &cfg.admin_token {
            None => {
                tracing::warn!("auth.admin_token is not set: admin operations are refused");
                None
            }
            Some(t) if t.expose().trim().len() < MIN_TOKEN_LEN => return Err(WeakToken),
            Some(t) => Some(Arc::new(digest(t.expose().trim()))),
        };
        Ok(Self { digest })
    }

    /// `router` with every one of its routes behind the admin check. Only matched routes
    /// are checked (`route_layer`): an unknown path still answers 404.
    pub fn protect<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        router.route_layer(middleware::from_fn_with_state(self.clone(), check))
    }

    /// Whether `authorization` (the header's value) carries the admin token.
    pub fn verify(&self, authorization: Option<&HeaderValue>) -> Result<(), Refusal> {
        let Some(expected) = &self.digest else {
            return Err(Refusal::NotConfigured);
        };
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or(Refusal::Missing)?;
        if digest(presented) == **expected {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }
}

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header: 401 with a `WWW-Authenticate` challenge.
    Missing,
    /// A bearer token that is not the admin token: 401 `invalid_token` (RFC 6750 §3.1).
    Invalid,
    /// The service has no admin token: 403, no credential can help.
    NotConfigured,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (problem, challenge) = match self {
            Refusal::Missing => (
                Problem::new(StatusCode::UNAUTHORIZED)
                    .with_detail("admin operation: send Authorization: Bearer <admin token>"),
                "Bearer realm=\"saga-admin\"",
            ),
            Refusal::Invalid => (
                Problem::new(StatusCode::UNAUTHORIZED)
                    .with_detail("the bearer token is not the admin token"),
                "Bearer realm=\"saga-admin\", error=\"invalid_token\"",
            ),
            Refusal::NotConfigured => {
                return Problem::new(StatusCode::FORBIDDEN)
                    .with_detail("admin operations are disabled: auth.admin_token is not set")
                    .into_response();
            }
        };
        let mut response = problem.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

async fn check(State(auth): State<AdminAuth>, request: Request, next: Next) -> Response {
    match auth.verify(request.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                ?refusal,
                method = %request.method(),
                path = %request.uri().path(),
                "admin request refused"
            );
            refusal.into_response()
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A random token for the local stack and tests: 32 bytes from the OS, hex-encoded.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, put};

    const TOKEN: &str = "0123456789abcdef-test";

    fn app(cfg: &AuthConfig) -> Router {
        let auth = AdminAuth::new(cfg).unwrap();
        Router::new()
            .route("/open", get(|| async { "open" }))
            .merge(auth.protect(Router::new().route("/admin", put(|| async { "done" }))))
    }

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn admin_routes_need_the_token_and_open_routes_do_not() {
        let base = serve(app(&AuthConfig::with_admin_token(TOKEN))).await;
        let http = reqwest::Client::new();

        let open = http.get(format!("{base}/open")).send().await.unwrap();
        assert_eq!(open.status(), 200);

        let none = http.put(format!("{base}/admin")).send().await.unwrap();
        assert_eq!(none.status(), 401);
        assert_eq!(
            none.headers()[header::CONTENT_TYPE],
            crate::problem::CONTENT_TYPE
        );
        assert!(
            none.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );

        for wrong in ["Bearer nope", "Basic dXNlcjpwdw==", TOKEN] {
            let resp = http
                .put(format!("{base}/admin"))
                .header(header::AUTHORIZATION, wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401, "{wrong}");
        }

        let ok = http
            .put(format!("{base}/admin"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), "done");

        let unknown = http.put(format!("{base}/nothing")).send().await.unwrap();
        assert_eq!(unknown.status(), 404, "unknown paths are not challenged");
    }

    #[tokio::test]
    async fn without_a_token_admin_routes_are_closed() {
        let base = serve(app(&AuthConfig::default())).await;
        let resp = reqwest::Client::new()
            .put(format!("{base}/admin"))
            .bearer_auth("anything-at-all-really")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
    }

    #[test]
    fn short_tokens_are_refused_and_generated_ones_are_long() {
        assert!(AdminAuth::new(&AuthConfig::with_admin_token("short")).is_err());
        let token = generate_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, generate_token());
        assert!(AdminAuth::new(&AuthConfig::with_admin_token(token)).is_ok());
    }
}
