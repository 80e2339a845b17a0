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

/// `#[serde(deserialize_with = ...)]` for integer fields of request bodies: a JSON number
/// with no fractional part is an integer (`7641.0` is `7641`, as JSON Schema's `integer`
/// says), so a client whose JSON library writes every number as a float is not refused. A
/// fraction, or a value out of the field's range, is still a data error (422).
pub mod integer {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserializer;
    use serde::de::{Error, Unexpected, Visitor};

    struct Integral<T>(PhantomData<T>);

    impl<T: TryFrom<i64> + TryFrom<u64>> Visitor<'_> for Integral<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "an integer in the range of {}",
                std::any::type_name::<T>()
            )
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // i64::MAX as f64 rounds up to 2^63, so the upper bound is exclusive.
            let integral = v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64;
            if !integral {
                return Err(E::invalid_value(Unexpected::Float(v), &self));
            }
            self.visit_i64(v as i64)
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64> + TryFrom<u64>,
    {
        d.deserialize_any(Integral(PhantomData))
    }

    /// The same for an `Option` field (`#[serde(default, with = "integer::option")]`).
    pub mod option {
        use serde::{Deserialize, Deserializer};

        pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
        where
            D: Deserializer<'de>,
            T: TryFrom<i64> + TryFrom<u64>,
        {
            #[derive(Deserialize)]
            struct Wrapped<T: TryFrom<i64> + TryFrom<u64>>(
                #[serde(deserialize_with = "super::deserialize")] T,
            );
            Ok(Option::<Wrapped<T>>::deserialize(d)?.map(|Wrapped(v)| v))
        }
    }
}
