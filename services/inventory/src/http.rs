//! Admin HTTP API: set and read stock levels (for the demo and tests; the saga itself talks
//! to the inventory only through Kafka).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use saga_contracts::ids::{IdError, Sku};
use saga_service_kit::auth::AdminAuth;
use saga_service_kit::openapi::{self, AdminSecurity, FieldErrorDoc, ProblemDoc, integer};
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

use crate::stock::{self, InventoryError, StockLevel};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid SKU: {0}")]
    InvalidSku(#[from] IdError),
    #[error("available must be between 0 and {max}, got {0}", max = i32::MAX)]
    InvalidAvailable(i64),
    #[error(
        "removing {removing} from SKU {sku} would leave less than zero available (available: {available})"
    )]
    WouldGoNegative {
        sku: Sku,
        removing: i32,
        available: i32,
    },
    #[error("adding {adding} to SKU {sku} would take it above {max} available", max = i32::MAX)]
    WouldOverflow { sku: Sku, adding: i32 },
    #[error("no stock recorded for SKU {0}")]
    UnknownSku(Sku),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ApiError::InvalidSku(e) => {
                Problem::bad_request(self.to_string()).with_field_error("sku", e.to_string())
            }
            ApiError::InvalidAvailable(_) => Problem::unprocessable(self.to_string())
                .with_field_error("available", self.to_string()),
            ApiError::UnknownSku(_) => Problem::not_found(self.to_string()),
            ApiError::WouldGoNegative { .. } | ApiError::WouldOverflow { .. } => {
                Problem::conflict(self.to_string())
            }
            ApiError::Inventory(_) | ApiError::Database(_) => {
                // The cause stays in the log (inside the request span); the client gets none.
                tracing::error!(error = %self, "admin request failed");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}

/// `PUT /stock/{sku}`: the available quantity (reserved stock is left alone).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    #[schema(minimum = 0, maximum = 2147483647)]
    #[serde(deserialize_with = "integer::deserialize")]
    pub available: i64,
}

/// `POST /stock/{sku}/adjustments`: add (or, negative, remove) units.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    #[serde(deserialize_with = "integer::deserialize")]
    pub delta: i32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct StockBody {
    pub sku: String,
    pub available: i32,
    pub reserved: i32,
}

impl From<StockLevel> for StockBody {
    fn from(s: StockLevel) -> Self {
        StockBody {
            sku: s.sku.to_string(),
            available: s.available,
            reserved: s.reserved,
        }
    }
}

/// The document at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inventory-service",
        description = "Stock per SKU. The saga reserves and releases stock over Kafka; this \
                       API reads stock and, with the admin token, sets or adjusts it."
    ),
    paths(get_stock, put_stock, adjust_stock),
    components(schemas(SetStock, AdjustStock, StockBody, ProblemDoc, FieldErrorDoc)),
    modifiers(&AdminSecurity)
)]
pub struct ApiDoc;

/// Reads open, changes behind the admin token.
pub fn router(pool: PgPool, admin: &AdminAuth) -> Router {
    Router::new()
        .route("/stock/{sku}", get(get_stock))
        .merge(admin.protect(admin_routes()))
        .merge(openapi::router(ApiDoc::openapi()))
        .with_state(pool)
}

/// Routes that change stock: admin only.
pub fn admin_routes() -> Router<PgPool> {
    Router::new()
        .route("/stock/{sku}", put(put_stock))
        .route("/stock/{sku}/adjustments", post(adjust_stock))
}

/// Adjusts by a delta, so concurrent reservations are never overwritten (`PUT` sets a total
/// and is meant for seeding).
#[utoipa::path(post, path = "/stock/{sku}/adjustments", params(("sku" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,64}$", description = "1-64 of A-Z a-z 0-9 . _ -")),
    request_body = AdjustStock, security(("admin_token" = [])),
    responses(
        (status = 200, body = StockBody, description = "the stock after the adjustment"),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "invalid SKU, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 409, body = ProblemDoc, content_type = "application/problem+json", description = "the delta would take available below zero or above 2^31-1"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
    ))]
async fn adjust_stock(
    State(pool): State<PgPool>,
    ProblemPath(sku): ProblemPath<String>,
    ProblemJson(body): ProblemJson<AdjustStock>,
) -> Result<ProblemJson<StockBody>, ApiError> {
    let sku = Sku::parse(sku)?;
    let mut conn = pool.acquire().await?;
    match stock::adjust_stock(&mut conn, &sku, body.delta).await? {
        stock::Adjusted::Applied(level) => {
            tracing::info!(%sku, delta = body.delta, available = level.available, "stock adjusted");
            Ok(ProblemJson(level.into()))
        }
        stock::Adjusted::WouldGoNegative(level) => Err(ApiError::WouldGoNegative {
            sku,
            removing: body.delta.saturating_neg(),
            available: level.available,
        }),
        stock::Adjusted::WouldOverflow(_) => Err(ApiError::WouldOverflow {
            sku,
            adding: body.delta,
        }),
    }
}

/// Sets the available quantity of a SKU (seeding; use adjustments while orders run).
#[utoipa::path(put, path = "/stock/{sku}", params(("sku" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,64}$", description = "1-64 of A-Z a-z 0-9 . _ -")),
    request_body = SetStock, security(("admin_token" = [])),
    responses(
        (status = 200, body = StockBody),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "invalid SKU, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
    ))]
async fn put_stock(
    State(pool): State<PgPool>,
    ProblemPath(sku): ProblemPath<String>,
    ProblemJson(body): ProblemJson<SetStock>,
) -> Result<ProblemJson<StockBody>, ApiError> {
    let sku = Sku::parse(sku)?;
    let available =
        i32::try_from(body.available).map_err(|_| ApiError::InvalidAvailable(body.available))?;
    if available < 0 {
        return Err(ApiError::InvalidAvailable(body.available));
    }
    let mut conn = pool.acquire().await?;
    let level = stock::set_stock(&mut conn, &sku, available).await?;
    tracing::info!(%sku, available, "stock set");
    Ok(ProblemJson(level.into()))
}

/// A SKU's available and reserved stock.
#[utoipa::path(get, path = "/stock/{sku}", params(("sku" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,64}$", description = "1-64 of A-Z a-z 0-9 . _ -")),
    responses(
        (status = 200, body = StockBody),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "invalid SKU"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no stock recorded for the SKU"),
    ))]
async fn get_stock(
    State(pool): State<PgPool>,
    ProblemPath(sku): ProblemPath<String>,
) -> Result<ProblemJson<StockBody>, ApiError> {
    let sku = Sku::parse(sku)?;
    let mut conn = pool.acquire().await?;
    match stock::stock_level(&mut conn, &sku).await? {
        Some(level) => Ok(ProblemJson(level.into())),
        None => Err(ApiError::UnknownSku(sku)),
    }
}
