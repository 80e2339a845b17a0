//! Read-only HTTP API: a shipment's state by order id (for the demo and tests; the saga itself
//! talks to the shipping service only through Kafka).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use saga_contracts::ids::OrderId;
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath};
use sqlx::PgPool;

use crate::shipments::{self, Shipment, ShippingError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid order id {0:?}: expected a UUID")]
    InvalidOrderId(String),
    #[error("no shipment recorded for order {0}")]
    UnknownOrder(OrderId),
    #[error(transparent)]
    Shipping(#[from] ShippingError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ApiError::InvalidOrderId(_) => Problem::bad_request(self.to_string())
                .with_field_error("order_id", self.to_string()),
            ApiError::UnknownOrder(_) => Problem::not_found(self.to_string()),
            ApiError::Shipping(_) | ApiError::Database(_) => {
                // The cause stays in the log (inside the request span); the client gets none.
                tracing::error!(error = %self, "request failed");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/shipments/{order_id}", get(get_shipment))
        .with_state(pool)
}

async fn get_shipment(
    State(pool): State<PgPool>,
    ProblemPath(order_id): ProblemPath<String>,
) -> Result<ProblemJson<Shipment>, ApiError> {
    let order_id: OrderId = order_id
        .parse()
        .map_err(|_| ApiError::InvalidOrderId(order_id))?;
    let mut conn = pool.acquire().await?;
    match shipments::shipment(&mut conn, order_id).await? {
        Some(s) => Ok(ProblemJson(s)),
        None => Err(ApiError::UnknownOrder(order_id)),
    }
}
