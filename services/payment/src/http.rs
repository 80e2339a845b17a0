//! Admin HTTP API: set and read a customer's credit (for the demo and tests; the saga itself
//! talks to the payment service only through Kafka).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use saga_contracts::Money;
use saga_contracts::ids::{CustomerId, IdError};
use saga_service_kit::auth::AdminAuth;
use saga_service_kit::openapi::{
    self, AdminSecurity, FieldErrorDoc, MoneyDoc, ProblemDoc, integer,
};
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

use crate::payments::{self, Account, PaymentError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid customer id: {0}")]
    InvalidCustomer(#[from] IdError),
    #[error("credit.amount_minor must not be negative, got {0}")]
    NegativeCredit(i64),
    #[error("the account of {0} keeps another currency ({1})")]
    OtherCurrency(CustomerId, String),
    #[error("the adjustment would leave the credit of {0} below zero")]
    WouldGoNegative(CustomerId),
    #[error("the adjustment would take the credit of {0} past 2^63-1 minor units")]
    WouldOverflow(CustomerId),
    #[error("no account for customer {0}")]
    UnknownAccount(CustomerId),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ApiError::InvalidCustomer(e) => Problem::bad_request(self.to_string())
                .with_field_error("customer_id", e.to_string()),
            ApiError::NegativeCredit(_) | ApiError::Payment(PaymentError::NegativeCredit(_)) => {
                Problem::unprocessable(self.to_string())
                    .with_field_error("credit.amount_minor", self.to_string())
            }
            ApiError::UnknownAccount(_) => Problem::not_found(self.to_string()),
            ApiError::OtherCurrency(..)
            | ApiError::WouldGoNegative(_)
            | ApiError::WouldOverflow(_) => Problem::conflict(self.to_string()),
            ApiError::Payment(PaymentError::CurrencyChange { .. }) => {
                Problem::conflict(self.to_string())
            }
            ApiError::Payment(_) | ApiError::Database(_) => {
                // The cause stays in the log (inside the request span); the client gets none.
                tracing::error!(error = %self, "admin request failed");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}

/// `PUT /accounts/{customer_id}`: the credit still available (seeding).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCredit {
    #[schema(value_type = CreditDoc)]
    #[serde(deserialize_with = "money")]
    pub credit: Money,
}

/// [`Money`] as a request carries it: `amount_minor` may be written as an integral float.
fn money<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
    #[derive(Deserialize)]
    struct Input {
        #[serde(deserialize_with = "integer::deserialize")]
        amount_minor: i64,
        currency: saga_contracts::Currency,
    }
    let Input {
        amount_minor,
        currency,
    } = Input::deserialize(d)?;
    Ok(Money {
        amount_minor,
        currency,
    })
}

/// Credit to set: not negative.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Credit)]
pub struct CreditDoc {
    #[schema(minimum = 0, maximum = 9223372036854775807i64)]
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

/// `POST /accounts/{customer_id}/adjustments`: add (or, negative, remove) credit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustCredit {
    #[schema(value_type = MoneyDoc)]
    #[serde(deserialize_with = "money")]
    pub delta: Money,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AccountBody {
    pub customer_id: String,
    /// Still available to charge.
    #[schema(value_type = MoneyDoc)]
    pub credit: Money,
    /// Held by charges not refunded.
    #[schema(value_type = MoneyDoc)]
    pub charged: Money,
}

impl From<Account> for AccountBody {
    fn from(a: Account) -> Self {
        AccountBody {
            customer_id: a.customer_id.to_string(),
            credit: a.credit,
            charged: a.charged,
        }
    }
}

/// The document at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-service",
        description = "Customer credit. The saga charges and refunds over Kafka; this API \
                       reads an account and, with the admin token, sets or adjusts its credit."
    ),
    paths(get_account, put_account, adjust_account),
    components(schemas(
        SetCredit,
        CreditDoc,
        AdjustCredit,
        AccountBody,
        MoneyDoc,
        ProblemDoc,
        FieldErrorDoc
    )),
    modifiers(&AdminSecurity)
)]
pub struct ApiDoc;

/// Reads open, changes behind the admin token.
pub fn router(pool: PgPool, admin: &AdminAuth) -> Router {
    Router::new()
        .route("/accounts/{customer_id}", get(get_account))
        .merge(admin.protect(admin_routes()))
        .merge(openapi::router(ApiDoc::openapi()))
        .with_state(pool)
}

/// Routes that change credit: admin only.
pub fn admin_routes() -> Router<PgPool> {
    Router::new()
        .route("/accounts/{customer_id}", put(put_account))
        .route("/accounts/{customer_id}/adjustments", post(adjust_account))
}

/// Adjusts by a delta, so concurrent charges are never overwritten (`PUT` sets a total and
/// is meant for seeding). A positive delta opens an account that does not exist.
#[utoipa::path(post, path = "/accounts/{customer_id}/adjustments", params(("customer_id" = String, Path, pattern = r"^[^\u0000-\u001F\u007F-\u009F]{1,128}$", description = "1-128 characters, no control characters")),
    request_body = AdjustCredit, security(("admin_token" = [])),
    responses(
        (status = 200, body = AccountBody, description = "the account after the adjustment"),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "invalid customer id, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
        (status = 409, body = ProblemDoc, content_type = "application/problem+json", description = "another currency than the account's, or the credit would go below zero or past 2^63-1"),
    ))]
async fn adjust_account(
    State(pool): State<PgPool>,
    ProblemPath(customer_id): ProblemPath<String>,
    ProblemJson(body): ProblemJson<AdjustCredit>,
) -> Result<ProblemJson<AccountBody>, ApiError> {
    let customer_id = CustomerId::parse(customer_id)?;
    let mut conn = pool.acquire().await?;
    match payments::adjust_credit(&mut conn, &customer_id, &body.delta).await? {
        payments::Adjusted::Applied(account) => {
            tracing::info!(%customer_id, delta = %body.delta, "credit adjusted");
            Ok(ProblemJson(account.into()))
        }
        payments::Adjusted::OtherCurrency(account) => Err(ApiError::OtherCurrency(
            customer_id,
            account.credit.currency.to_string(),
        )),
        payments::Adjusted::WouldGoNegative(_) => Err(ApiError::WouldGoNegative(customer_id)),
        payments::Adjusted::WouldOverflow(_) => Err(ApiError::WouldOverflow(customer_id)),
    }
}

/// Sets the credit still available (seeding; use adjustments while orders run).
#[utoipa::path(put, path = "/accounts/{customer_id}", params(("customer_id" = String, Path, pattern = r"^[^\u0000-\u001F\u007F-\u009F]{1,128}$", description = "1-128 characters, no control characters")),
    request_body = SetCredit, security(("admin_token" = [])),
    responses(
        (status = 200, body = AccountBody),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "invalid customer id, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
        (status = 409, body = ProblemDoc, content_type = "application/problem+json", description = "the account holds charges in another currency"),
    ))]
async fn put_account(
    State(pool): State<PgPool>,
    ProblemPath(customer_id): ProblemPath<String>,
    ProblemJson(body): ProblemJson<SetCredit>,
) -> Result<ProblemJson<AccountBody>, ApiError> {
    let customer_id = CustomerId::parse(customer_id)?;
    if body.credit.amount_minor < 0 {
        return Err(ApiError::NegativeCredit(body.credit.amount_minor));
    }
    let mut tx = pool.begin().await?;
    let account = payments::set_credit(&mut tx, &customer_id, &body.credit).await?;
    tx.commit().await?;
    tracing::info!(%customer_id, credit = %body.credit, "credit set");
    Ok(ProblemJson(account.into()))
}

/// A customer's credit and open charges.
#[utoipa::path(get, path = "/accounts/{customer_id}", params(("customer_id" = String, Path, pattern = r"^[^\u0000-\u001F\u007F-\u009F]{1,128}$", description = "1-128 characters, no control characters")),
    responses(
        (status = 200, body = AccountBody),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "invalid customer id"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no account for the customer"),
    ))]
async fn get_account(
    State(pool): State<PgPool>,
    ProblemPath(customer_id): ProblemPath<String>,
) -> Result<ProblemJson<AccountBody>, ApiError> {
    let customer_id = CustomerId::parse(customer_id)?;
    let mut conn = pool.acquire().await?;
    match payments::account(&mut conn, &customer_id).await? {
        Some(account) => Ok(ProblemJson(account.into())),
        None => Err(ApiError::UnknownAccount(customer_id)),
    }
}
