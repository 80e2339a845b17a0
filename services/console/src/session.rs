//! Who may use the console: whoever holds the suite's admin token. An operator logs in once
//! with the token (`/login`); the console answers with a session cookie derived from the token
//! (`HttpOnly`, `SameSite=Strict`, so other sites can neither read it nor make the browser
//! send it with a forged form post). Scripts may send `Authorization: Bearer <token>` instead.
//! Every page needs it, reads included: the console shows log lines and message payloads,
//! which the services themselves only show to admins.
//!
//! The cookie is a SHA-256 of the token under a fixed label, not the token itself: a leaked
//! cookie opens the console, not the services' admin routes. Rotating the token ends every
//! session.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use saga_service_kit::auth::AdminAuth;
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "saga_console";

/// The admin check and the session value it implies.
#[derive(Clone)]
pub struct Sessions {
    auth: AdminAuth,
    /// The cookie value of a logged-in operator; `None` when no token is configured (then
    /// nobody can log in).
    session: Option<String>,
}

impl Sessions {
    pub fn new(auth: AdminAuth, token: Option<&str>) -> Sessions {
        Sessions {
            auth,
            session: token.map(|t| session_value(t.trim())),
        }
    }

    /// The cookie for `token`, when it is the admin token.
    pub fn login(&self, token: &str) -> Option<String> {
        let header = HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
        self.auth.verify(Some(&header)).ok()?;
        self.session.clone()
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        if self.auth.verify(headers.get(header::AUTHORIZATION)).is_ok() {
            return true;
        }
        let Some(expected) = &self.session else {
            return false;
        };
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(name, value)| name == COOKIE && digest_eq(value, expected))
    }
}

fn session_value(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"saga-console-session\0");
    h.update(token.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares digests of both sides, so the time taken does not depend on the common prefix.
fn digest_eq(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// `Set-Cookie` of a login (`value`) or a logout (`None`).
pub fn set_cookie(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

/// The middleware: pages without a session go to the login form; other requests get 401.
pub async fn require(State(sessions): State<Sessions>, request: Request, next: Next) -> Response {
    if sessions.allows(request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::GET {
        let next_path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let target = format!("/login?next={}", urlencode(&next_path));
        return Redirect::to(&target).into_response();
    }
    (
        axum::http::StatusCode::UNAUTHORIZED,
        "log in at /login or send Authorization: Bearer <admin token>",
    )
        .into_response()
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use saga_service_kit::auth::AuthConfig;

    const TOKEN: &str = "console-test-token-0123456789";

    #[test]
    fn only_the_admin_token_logs_in_and_its_cookie_opens() {
        let auth = AdminAuth::new(&AuthConfig::with_admin_token(TOKEN)).unwrap();
        let s = Sessions::new(auth, Some(TOKEN));
        assert!(s.login("wrong-token-wrong-token").is_none());
        let cookie = s.login(TOKEN).expect("the token logs in");
        assert!(!cookie.contains(TOKEN));
        let mut h = HeaderMap::new();
        assert!(!s.allows(&h));
        h.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}={cookie}").parse().unwrap(),
        );
        assert!(s.allows(&h));
        h.insert(header::COOKIE, format!("{COOKIE}=x").parse().unwrap());
        assert!(!s.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        assert!(s.allows(&h));
    }
}
