//! Read-only HTTP API: a shipment's state by order id (for the demo and tests; the saga itself
//! talks to the shipping service only through Kafka).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use saga_contracts::ids::OrderId;
use saga_service_kit::openapi::{self, FieldErrorDoc, ProblemDoc};
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

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

/// The document at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shipping-service",
        description = "Shipments. The saga schedules and cancels them over Kafka; this API \
                       reads one by order id."
    ),
    paths(get_shipment),
    components(schemas(ShipmentDoc, ProblemDoc, FieldErrorDoc))
)]
pub struct ApiDoc;

/// [`Shipment`] as the document describes it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Shipment)]
pub struct ShipmentDoc {
    #[schema(format = Uuid)]
    pub order_id: String,
    /// Set once booked (scheduled, dispatched, and cancelled after booking).
    #[schema(format = Uuid)]
    pub shipment_id: Option<String>,
    /// `pending` while a command is being handled; `tombstone` when a cancel came before any
    /// schedule.
    #[schema(pattern = "^(pending|scheduled|refused|cancelled|dispatched|tombstone)$")]
    pub status: String,
    /// ISO 3166-1 alpha-2 of the address, once known.
    pub country: Option<String>,
    /// Why the shipment was refused.
    pub refusal_reason: Option<String>,
    pub dispatched_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/shipments/{order_id}", get(get_shipment))
        .merge(openapi::router(ApiDoc::openapi()))
        .with_state(pool)
}

/// The shipment of an order.
#[utoipa::path(get, path = "/shipments/{order_id}",
    params(("order_id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = ShipmentDoc),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "not a UUID"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no shipment for the order"),
    ))]
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
