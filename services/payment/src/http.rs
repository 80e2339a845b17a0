//! Admin HTTP API: set and read a customer's credit (for the demo and tests; the saga itself
//! talks to the payment service only through Kafka).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use saga_contracts::Money;
use saga_contracts::ids::{CustomerId, IdError};
use saga_service_kit::auth::AdminAuth;
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

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
            ApiError::OtherCurrency(..) | ApiError::WouldGoNegative(_) => {
                Problem::conflict(self.to_string())
            }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCredit {
    pub credit: Money,
}

/// `POST /accounts/{customer_id}/adjustments`: add (or, negative, remove) credit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustCredit {
    pub delta: Money,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountBody {
    pub customer_id: String,
    pub credit: Money,
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

/// Reads open, changes behind the admin token.
pub fn router(pool: PgPool, admin: &AdminAuth) -> Router {
    Router::new()
        .route("/accounts/{customer_id}", get(get_account))
        .merge(admin.protect(admin_routes()))
        .with_state(pool)
}

/// Routes that change credit: admin only.
pub fn admin_routes() -> Router<PgPool> {
    Router::new()
        .route("/accounts/{customer_id}", put(put_account))
        .route("/accounts/{customer_id}/adjustments", post(adjust_account))
}

/// Adjusts by a delta, so concurrent charges are never overwritten (`PUT` sets a total and
/// is meant for seeding).
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
    }
}

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
