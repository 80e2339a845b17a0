//! HTTP API: orders, catalog, read-model admin and the OpenAPI document. Errors are
//! problem+json; internals are logged, never sent.

use std::str::FromStr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use saga_contracts::ids::{CustomerId, OrderId, Sku};
use saga_contracts::{Currency, Money};
use saga_service_kit::openapi::AdminSecurity;
use saga_service_kit::problem::{Problem, ProblemJson, ProblemQuery};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::domain::{Order, OrderStatus, RecordedEvent};
use crate::placement::{AddressRequest, FieldError, ItemRequest, PlaceOrderRequest};
use crate::projection::OrderSummary;
use crate::service::{Orders, PlacedOrder, ServiceError};

pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 20;

pub fn router(orders: Orders) -> Router {
    Router::new()
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/events", get(order_events))
        .route("/orders/{id}/stream", get(order_stream))
        .route("/catalog", get(list_catalog))
        .route("/openapi.json", get(openapi_json))
        .with_state(orders)
}

/// Prices and the read-model rebuild (one transaction over the whole event log): the
/// caller layers the admin credential check on them (`AdminAuth::protect`).
pub fn admin_routes(orders: Orders) -> Router {
    Router::new()
        .route("/catalog/{sku}", put(put_price))
        .route("/admin/projections/order_summaries/rebuild", post(rebuild))
        .with_state(orders)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Orders of the saga suite: event-sourced, with a CQRS read model."
    ),
    paths(
        place_order,
        get_order,
        order_events,
        order_stream,
        list_orders,
        list_catalog,
        put_price,
        rebuild
    ),
    components(schemas(
        PlaceOrderRequest,
        ItemRequest,
        AddressRequest,
        PlacedOrder,
        OrderStatus,
        OrderView,
        LineView,
        AddressView,
        MoneyView,
        EventView,
        EventHistory,
        SummaryView,
        OrderPage,
        PriceRequest,
        CatalogItem,
        CatalogView,
        RebuildReport,
        ProblemView,
        FieldErrorView
    )),
    modifiers(&AdminSecurity)
)]
pub struct ApiDoc;

async fn openapi_json() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

/// Maps service errors to problems; the cause of a 5xx stays in the log.
impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        match e {
            ServiceError::Invalid(errors) => invalid(errors),
            ServiceError::KeyReused => Problem::unprocessable(
                "this Idempotency-Key was already used with a different request body",
            )
            .with_title("Idempotency-Key reused"),
            ServiceError::UnknownToken(t) => Problem::bad_request(format!(
                "consistency token {t} was not issued by this service"
            ))
            .with_field_error("consistency_token", "unknown token"),
            ServiceError::NotCaughtUp(t) => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail(format!(
                    "the read model has not yet reached consistency token {t}; retry shortly"
                )),
            other => {
                tracing::error!(error = %other, "request failed");
                Problem::internal()
            }
        }
    }
}

fn invalid(errors: Vec<FieldError>) -> Problem {
    errors.into_iter().fold(
        Problem::unprocessable("the request is invalid; see errors")
            .with_title("Validation failed"),
        |p, e| p.with_field_error(e.field, e.message),
    )
}

fn field_problem(status: StatusCode, field: &str, message: impl Into<String>) -> Problem {
    let message = message.into();
    Problem::new(status)
        .with_detail(format!("{field}: {message}"))
        .with_field_error(field, message)
}

// ---------- views ----------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MoneyView {
    pub amount_minor: i64,
    #[schema(example = "EUR")]
    pub currency: String,
}

impl From<&Money> for MoneyView {
    fn from(m: &Money) -> Self {
        MoneyView {
            amount_minor: m.amount_minor,
            currency: m.currency.to_string(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    pub sku: String,
    pub quantity: i32,
    pub unit_price: MoneyView,
    pub line_total: MoneyView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddressView {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// An order as folded from its events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    /// Set when status is REJECTED.
    pub rejection_reason: Option<String>,
    pub items: Vec<LineView>,
    pub total: MoneyView,
    pub shipping_address: AddressView,
    pub version: i32,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            order_id: o.id.to_string(),
            customer_id: o.customer_id.to_string(),
            status: o.status,
            rejection_reason: o.rejection_reason.clone(),
            items: o
                .lines
                .iter()
                .map(|l| LineView {
                    sku: l.sku.to_string(),
                    quantity: l.quantity,
                    unit_price: (&l.unit_price).into(),
                    // Cannot overflow: the total was computed with checked arithmetic.
                    line_total: MoneyView {
                        amount_minor: l.unit_price.amount_minor * i64::from(l.quantity),
                        currency: l.unit_price.currency.to_string(),
                    },
                })
                .collect(),
            total: (&o.total).into(),
            shipping_address: AddressView {
                name: o.shipping_address.name.clone(),
                line1: o.shipping_address.line1.clone(),
                line2: o.shipping_address.line2.clone(),
                city: o.shipping_address.city.clone(),
                postal_code: o.shipping_address.postal_code.clone(),
                country: o.shipping_address.country.clone(),
            },
            version: o.version,
            placed_at: o.placed_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub version: i32,
    #[serde(rename = "type")]
    pub type_name: String,
    pub global_seq: i64,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventHistory {
    pub order_id: String,
    pub events: Vec<EventView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummaryView {
    pub order_id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub rejection_reason: Option<String>,
    pub total: MoneyView,
    pub item_count: i32,
    pub version: i32,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&OrderSummary> for SummaryView {
    fn from(s: &OrderSummary) -> Self {
        SummaryView {
            order_id: s.order_id.to_string(),
            customer_id: s.customer_id.to_string(),
            status: s.status,
            rejection_reason: s.rejection_reason.clone(),
            total: (&s.total).into(),
            item_count: s.item_count,
            version: s.version,
            placed_at: s.placed_at,
            updated_at: s.updated_at,
        }
    }
}

/// A page of a customer's orders from the read model, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<SummaryView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// A unit price: positive (payment declines every amount <= 0, so a free item could never
/// be sold).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    #[schema(
        required = true,
        nullable = false,
        minimum = 1,
        maximum = 9223372036854775807i64
    )]
    #[serde(
        default,
        deserialize_with = "saga_service_kit::openapi::integer::option::deserialize"
    )]
    pub amount_minor: Option<i64>,
    /// ISO 4217, upper case.
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[A-Z]{3}$",
        example = "EUR"
    )]
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    #[schema(required = true, nullable = false)]
    pub unit_price: Option<MoneyInput>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogItem {
    pub sku: String,
    pub unit_price: MoneyView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogView {
    pub items: Vec<CatalogItem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RebuildReport {
    pub events_replayed: usize,
}

/// RFC 9457 problem details (`application/problem+json`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemView {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
    pub errors: Option<Vec<FieldErrorView>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldErrorView {
    pub field: String,
    pub message: String,
}

// ---------- handlers ----------

/// Place an order. Prices come from the catalog; the total is snapshotted into the order.
#[utoipa::path(post, path = "/orders", request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$",
        description = "1 to 255 visible ASCII characters, no spaces. Same key + same body: the same order; same key + other body: 422")),
    responses(
        (status = 202, body = PlacedOrder, description = "accepted; Location and X-Consistency-Token headers set"),
        (status = 400, body = ProblemView, content_type = "application/problem+json", description = "a body that is not JSON, or an invalid Idempotency-Key"),
        (status = 415, body = ProblemView, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemView, content_type = "application/problem+json", description = "the body does not match the schema, names an unknown SKU, or reuses an Idempotency-Key with another body"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = tracing::field::Empty))]
async fn place_order(
    State(orders): State<Orders>,
    headers: HeaderMap,
    ProblemJson(request): ProblemJson<PlaceOrderRequest>,
) -> Result<Response, Problem> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => match v.to_str() {
            // Visible ASCII without spaces, as the document says.
            Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(k.to_owned())
            }
            _ => {
                return Err(field_problem(
                    StatusCode::BAD_REQUEST,
                    "Idempotency-Key",
                    "must be 1 to 255 visible ASCII characters, no spaces",
                ));
            }
        },
    };
    let (placed, replayed) = orders.place(&request, key.as_deref()).await?;
    let mut response = (StatusCode::ACCEPTED, axum::Json(&placed)).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/orders/{}", placed.order_id)) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&placed.consistency_token) {
        h.insert(CONSISTENCY_TOKEN, v);
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct AsOfQuery {
    as_of: Option<String>,
}

fn parse_order_id(raw: &str) -> Result<OrderId, Problem> {
    OrderId::from_str(raw)
        .map_err(|_| Problem::not_found(format!("no order {raw:?}: not a valid order id")))
}

/// The current order (fold of its events, so always up to date), or with `as_of` the
/// order as it was at that time (events replayed up to it).
#[utoipa::path(get, path = "/orders/{id}",
    params(("id" = String, Path, format = Uuid), ("as_of" = Option<String>, Query, nullable = false, format = DateTime, description = "RFC 3339 instant")),
    responses(
        (status = 200, body = OrderView),
        (status = 400, body = ProblemView, content_type = "application/problem+json"),
        (status = 404, body = ProblemView, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn get_order(
    State(orders): State<Orders>,
    axum::extract::Path(id): axum::extract::Path<String>,
    ProblemQuery(query): ProblemQuery<AsOfQuery>,
) -> Result<axum::Json<OrderView>, Problem> {
    let order_id = parse_order_id(&id)?;
    let as_of = query
        .as_of
        .as_deref()
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    field_problem(
                        StatusCode::BAD_REQUEST,
                        "as_of",
                        format!("not an RFC 3339 time: {e}"),
                    )
                })
        })
        .transpose()?;
    match orders.get(order_id, as_of).await? {
        Some(order) => Ok(axum::Json(OrderView::from(&order))),
        None if as_of.is_some() => Err(Problem::not_found(format!(
            "order {order_id} did not exist at the requested time"
        ))),
        None => Err(Problem::not_found(format!("no order {order_id}"))),
    }
}

/// The order's event history, oldest first.
#[utoipa::path(get, path = "/orders/{id}/events", params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = EventHistory),
        (status = 404, body = ProblemView, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn order_events(
    State(orders): State<Orders>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<EventHistory>, Problem> {
    let order_id = parse_order_id(&id)?;
    let events = orders.history(order_id).await?;
    if events.is_empty() {
        return Err(Problem::not_found(format!("no order {order_id}")));
    }
    Ok(axum::Json(EventHistory {
        order_id: order_id.to_string(),
        events: events.iter().map(event_view).collect(),
    }))
}

fn event_view(e: &RecordedEvent) -> EventView {
    let tagged = serde_json::to_value(&e.event).unwrap_or_default();
    EventView {
        version: e.version,
        type_name: e.event.type_name().to_owned(),
        global_seq: e.global_seq,
        recorded_at: e.recorded_at,
        data: tagged.get("data").cloned().unwrap_or_default(),
    }
}

/// How often an open stream re-reads the order when no projector wake-up arrives.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Live status (Server-Sent Events): the current state at once, then every change; event
/// `id` is the consistency token, so a reconnect with `Last-Event-ID` resumes after it. The
/// stream ends once the order is APPROVED or REJECTED.
#[utoipa::path(get, path = "/orders/{id}/stream",
    params(("id" = String, Path, format = Uuid),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, description = "the id of the last event received")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "`event: order`, `id: <consistency token>`, `data: OrderView`"),
        (status = 400, body = ProblemView, content_type = "application/problem+json"),
        (status = 404, body = ProblemView, content_type = "application/problem+json"),
        (status = 503, body = ProblemView, content_type = "application/problem+json", description = "too many open streams"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn order_stream(
    State(orders): State<Orders>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let order_id = parse_order_id(&id)?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    field_problem(
                        StatusCode::BAD_REQUEST,
                        "Last-Event-ID",
                        "must be the id of an event of this stream",
                    )
                })
        })
        .transpose()?;
    if orders.current(order_id).await?.is_none() {
        return Err(Problem::not_found(format!("no order {order_id}")));
    }
    let Some(slot) = orders.streams().try_acquire() else {
        let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_title("Too many open streams")
            .with_detail(format!(
                "this instance serves at most {} open order streams; retry later or poll GET /orders/{order_id}",
                orders.streams().max()
            ))
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(response);
    };
    Ok(
        crate::live::stream(orders.clone(), order_id, last_event_id, slot, STREAM_POLL)
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    customer_id: Option<String>,
    status: Option<String>,
    older_than: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    consistency_token: Option<String>,
}

/// A customer's orders from the read model, newest first; or, with `status`, the orders in
/// that status (optionally placed longer than `older_than` ago, e.g. `30s`, `5m`: PENDING
/// orders whose saga never started), oldest first. With a consistency token (query or
/// `X-Consistency-Token` header) the answer includes that write, or 503 after a bounded wait.
#[utoipa::path(get, path = "/orders",
    params(
        ("customer_id" = Option<String>, Query, nullable = false, max_length = 128,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F]{1,128}$",
            description = "required unless status is given"),
        ("status" = Option<OrderStatus>, Query, nullable = false, description = "PENDING, APPROVED or REJECTED"),
        ("older_than" = Option<String>, Query, nullable = false, pattern = r"^[0-9]{1,12}(ms|s|m|h|d)?$",
            description = "with status: placed at least this long ago (250ms, 30s, 5m, 1h)"),
        ("limit" = Option<i64>, Query, nullable = false, minimum = 1, maximum = 100, description = "default 20"),
        ("after" = Option<String>, Query, nullable = false, format = Uuid, description = "next_after of the previous page"),
        ("consistency_token" = Option<i64>, Query, nullable = false, description = "a token returned by POST /orders (400 for one this service did not issue)"),
        ("X-Consistency-Token" = Option<i64>, Header, nullable = false),
    ),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, body = ProblemView, content_type = "application/problem+json"),
        (status = 503, body = ProblemView, content_type = "application/problem+json", description = "the read model did not reach the token in time"),
    ))]
#[tracing::instrument(skip_all)]
async fn list_orders(
    State(orders): State<Orders>,
    headers: HeaderMap,
    ProblemQuery(query): ProblemQuery<ListQuery>,
) -> Result<axum::Json<OrderPage>, Problem> {
    let bad = |field: &str, msg: &str| field_problem(StatusCode::BAD_REQUEST, field, msg);
    let status = query
        .status
        .as_deref()
        .map(|raw| {
            raw.parse::<OrderStatus>()
                .map_err(|_| bad("status", "must be PENDING, APPROVED or REJECTED"))
        })
        .transpose()?;
    let older_than = match (query.older_than.as_deref(), status) {
        (None, _) => None,
        (Some(_), None) => return Err(bad("older_than", "needs status")),
        (Some(raw), Some(_)) => Some(
            saga_service_kit::duration::parse(raw)
                .map_err(|e| bad("older_than", &e.to_string()))?
                // Clamped: beyond a century PostgreSQL's timestamp arithmetic overflows, and
                // no order is older.
                .min(std::time::Duration::from_secs(100 * 365 * 86_400)),
        ),
    };
    let customer_id = match query.customer_id.as_deref() {
        None | Some("") => None,
        Some(raw) => {
            Some(CustomerId::from_str(raw).map_err(|e| bad("customer_id", &e.to_string()))?)
        }
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(bad("limit", "must be an integer between 1 and 100")),
        },
    };
    let after = query
        .after
        .as_deref()
        .map(|raw| OrderId::from_str(raw).map_err(|_| bad("after", "must be an order id")))
        .transpose()?;
    // Both places are checked when both are given: a malformed header must not hide behind a
    // good query parameter (the document says each is an integer).
    let parse_token = |raw: &str| {
        raw.parse::<i64>().map_err(|_| {
            bad(
                "consistency_token",
                "must be a token returned by POST /orders",
            )
        })
    };
    let query_token = query
        .consistency_token
        .as_deref()
        .map(parse_token)
        .transpose()?;
    let header_token = headers
        .get(CONSISTENCY_TOKEN)
        .map(|v| {
            v.to_str()
                .map_err(|_| ())
                .and_then(|s| parse_token(s).map_err(|_| ()))
        })
        .transpose()
        .map_err(|()| {
            bad(
                "X-Consistency-Token",
                "must be a token returned by POST /orders",
            )
        })?;
    let token = query_token.or(header_token);
    let (page, more) = if let Some(status) = status {
        orders
            .list_by_status(
                status,
                older_than,
                customer_id.as_ref(),
                after,
                limit,
                token,
            )
            .await?
    } else if let Some(customer_id) = &customer_id {
        orders.list(customer_id, after, limit, token).await?
    } else {
        return Err(bad("customer_id", "is required (or give status)"));
    };
    Ok(axum::Json(OrderPage {
        next_after: if more {
            page.last().map(|s| s.order_id.to_string())
        } else {
            None
        },
        items: page.iter().map(SummaryView::from).collect(),
    }))
}

/// The catalog: unit prices by SKU.
#[utoipa::path(get, path = "/catalog", responses((status = 200, body = CatalogView)))]
async fn list_catalog(State(orders): State<Orders>) -> Result<axum::Json<CatalogView>, Problem> {
    let items = orders.catalog().await?;
    Ok(axum::Json(CatalogView {
        items: items
            .iter()
            .map(|(sku, price)| CatalogItem {
                sku: sku.to_string(),
                unit_price: price.into(),
            })
            .collect(),
    }))
}

/// Set a SKU's unit price (admin). Orders already placed keep their snapshotted prices.
#[utoipa::path(put, path = "/catalog/{sku}",
    params(("sku" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = PriceRequest, security(("admin_token" = [])),
    responses(
        (status = 200, body = CatalogItem),
        (status = 400, body = ProblemView, content_type = "application/problem+json", description = "a body that is not JSON"),
        (status = 401, body = ProblemView, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemView, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 415, body = ProblemView, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemView, content_type = "application/problem+json", description = "an invalid SKU, or a body that does not match the schema"),
    ))]
#[tracing::instrument(skip_all, fields(sku = %sku))]
async fn put_price(
    State(orders): State<Orders>,
    axum::extract::Path(sku): axum::extract::Path<String>,
    ProblemJson(body): ProblemJson<PriceRequest>,
) -> Result<axum::Json<CatalogItem>, Problem> {
    let mut errors = Vec::new();
    let sku = Sku::from_str(&sku)
        .map_err(|e| errors.push(fe("sku", e.to_string())))
        .ok();
    let (amount, currency) = match &body.unit_price {
        None => {
            errors.push(fe("unit_price", "is required"));
            (None, None)
        }
        Some(p) => {
            let amount = match p.amount_minor {
                None => {
                    errors.push(fe("unit_price.amount_minor", "is required"));
                    None
                }
                // Payment declines every amount <= 0, so a free item could never be sold.
                Some(a) if a <= 0 => {
                    errors.push(fe("unit_price.amount_minor", "must be positive"));
                    None
                }
                Some(a) => Some(a),
            };
            let currency = match p.currency.as_deref() {
                None => {
                    errors.push(fe("unit_price.currency", "is required"));
                    None
                }
                Some(c) => Currency::from_str(c)
                    .map_err(|e| errors.push(fe("unit_price.currency", e.to_string())))
                    .ok(),
            };
            (amount, currency)
        }
    };
    let (Some(sku), Some(amount_minor), Some(currency)) = (sku, amount, currency) else {
        return Err(invalid(errors));
    };
    let price = Money {
        amount_minor,
        currency,
    };
    orders.set_price(&sku, &price).await?;
    Ok(axum::Json(CatalogItem {
        sku: sku.to_string(),
        unit_price: (&price).into(),
    }))
}

fn fe(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Replay: rebuild the `order_summaries` read model from the event log.
#[utoipa::path(post, path = "/admin/projections/order_summaries/rebuild",
    security(("admin_token" = [])),
    responses(
        (status = 200, body = RebuildReport),
        (status = 401, body = ProblemView, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemView, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
    ))]
#[tracing::instrument(skip_all)]
async fn rebuild(State(orders): State<Orders>) -> Result<axum::Json<RebuildReport>, Problem> {
    let events_replayed = orders.rebuild_read_model().await?;
    tracing::info!(events_replayed, "read model rebuilt");
    Ok(axum::Json(RebuildReport { events_replayed }))
}
