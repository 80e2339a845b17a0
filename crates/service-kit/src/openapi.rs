//! What every service's OpenAPI document shares: the problem+json error body, the admin
//! bearer scheme and the route that serves the document (`GET /openapi.json`). Each service
//! derives its own `utoipa::OpenApi` over its handlers and hands it to [`router`].
//!
//! The documents state the contract the servers enforce (required fields, formats, unknown
//! fields refused, 415 on a body that is not JSON), because `deploy/fuzz.sh` (schemathesis)
//! sends what the documents allow and fails on any answer they do not describe.

use axum::Router;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// Where every service serves its document.
pub const PATH: &str = "/openapi.json";

/// The name of the admin credential's security scheme (`Authorization: Bearer <token>`).
pub const ADMIN_SCHEME: &str = "admin_token";

/// RFC 9457 problem details, as [`crate::problem::Problem`] renders them
/// (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// `about:blank` unless a more specific type applies.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// One entry per invalid field, when the problem is a validation failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorDoc>>,
}

/// One invalid field of a request, named by its path (`unit_price.currency`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDoc {
    pub field: String,
    pub message: String,
}

/// Adds the admin bearer scheme ([`ADMIN_SCHEME`]); admin operations name it in their
/// `security(...)`.
pub struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "The services' admin token (`APP_AUTH__ADMIN_TOKEN`; the local stack writes it to \
             .stack/secrets/admin-token and SAGA_ADMIN_TOKEN in stack.env)."
                .to_owned(),
        );
        components.add_security_scheme(ADMIN_SCHEME, SecurityScheme::Http(bearer));
    }
}

/// `GET /openapi.json` answering `doc`.
pub fn router<S>(doc: utoipa::openapi::OpenApi) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let doc = std::sync::Arc::new(doc);
    Router::new().route(
        PATH,
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
}

/// An amount in minor units of one currency (`saga_contracts::Money`), e.g. 1999 EUR cents.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Money)]
pub struct MoneyDoc {
    #[schema(minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}
