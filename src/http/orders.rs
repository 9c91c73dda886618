//! Orders: placement (through the batching writer), reads, payment, cancellation and the
//! live status stream. The use cases are `app::orders` and `app::payments`.

use super::error::{ApiError, ApiResult};
use super::extract::{AuthUser, IdempotencyHeader, Json, Page, Path};
use super::order_view::OrderView;
use super::page::PageView;
use super::state::AppState;
use crate::app::payments::{Checkout, PaymentClaim};
use crate::app::placement::request::OrderInput;
use crate::app::placement::Placed;
use crate::domain::events::OrderStatusChanged;
use crate::domain::{OrderStatus, Timestamp};
use crate::events::OrderUpdate;
use crate::store::PlaceOutcome;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemBody {
    #[schema(minimum = 1)]
    pub product_id: i64,
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderBody {
    /// 1 to 50 items, each product once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<OrderItemBody>,
    /// One of the buyer's coupons (a user coupon id from `GET /me/coupons`): held with the
    /// order, used when it is paid, returned when it is cancelled, expires or is refunded.
    #[schema(minimum = 1)]
    pub coupon_id: Option<i64>,
    /// Points to spend (1 point = 1 won), taken after the coupon from the lots that expire
    /// first; held, spent, released and refunded with the order.
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub points: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    /// The `payment_id` of the order's checkout, under which the buyer paid at the
    /// gateway. With the payment simulator, any key the client makes up also works (and
    /// one starting with `decline` is declined).
    #[schema(min_length = 1, max_length = 200)]
    pub payment_key: String,
    /// What the buyer paid, in won; must equal the order's `payable`.
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub amount: i64,
}

#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), request_body = PlaceOrderBody,
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$",
        description = "required, 1 to 128 printable ASCII characters; the same key and body return the same order")),
    responses((status = 201, body = OrderView), (status = 200, description = "replay of an earlier request", body = OrderView),
        (status = 202, description = "the writers are busy: waiting in the waiting room", body = super::queue::TicketView),
        (status = 403, description = "not a buyer", body = super::error::ErrorBody),
        (status = 404, description = "no such product, or `coupon_not_found`", body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "`overloaded`: the waiting room is full", body = super::error::ErrorBody)))]
pub async fn place_order(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(body): Json<PlaceOrderBody>,
) -> ApiResult<Response> {
    let input = OrderInput {
        items: body
            .items
            .iter()
            .map(|i| (i.product_id, i.quantity))
            .collect(),
        coupon_id: body.coupon_id,
        points: body.points,
    };
    match state.app.orders.place(&user.actor(), &key, &input).await? {
        Placed::Now(outcome) => outcome_response(outcome),
        Placed::Queued(ticket) => Ok(super::queue::queued_response(&state, ticket)),
    }
}

/// 201 for a new order, 200 for a replay, the rejection's error otherwise.
pub fn outcome_response(outcome: PlaceOutcome) -> ApiResult<Response> {
    match outcome {
        PlaceOutcome::Placed(order) => {
            Ok((StatusCode::CREATED, axum::Json(OrderView::from(order))).into_response())
        }
        PlaceOutcome::Replayed(order) => {
            Ok((StatusCode::OK, axum::Json(OrderView::from(order))).into_response())
        }
        PlaceOutcome::Rejected(rejection) => Err((&rejection).into()),
    }
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = state.app.orders.visible(&user.actor(), id).await?;
    Ok(axum::Json(order.into()))
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), params(super::extract::PageQuery),
    responses((status = 200, body = PageView<OrderView>)))]
pub async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<OrderView>>> {
    let orders = state.app.orders.list(&user.actor(), page).await?;
    Ok(axum::Json(orders.into()))
}

/// What the browser needs to pay an order at the gateway (PortOne's browser SDK:
/// `storeId`, `paymentId`, `orderName`, `totalAmount`, `currency`).
#[derive(Serialize, ToSchema)]
pub struct CheckoutView {
    /// Bound to this order for good; the same one until the order is paid.
    pub payment_id: String,
    pub order_id: i64,
    /// The order's `payable`, in won.
    pub amount: i64,
    /// Always `KRW`.
    pub currency: &'static str,
    pub order_name: String,
    /// The PortOne store id (`simulated` with the simulator).
    pub store_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub pay_by: Timestamp,
}

impl From<Checkout> for CheckoutView {
    fn from(c: Checkout) -> Self {
        CheckoutView {
            payment_id: c.payment_id,
            order_id: c.order_id,
            amount: c.amount,
            currency: c.currency,
            order_name: c.order_name,
            store_id: c.store_id,
            pay_by: c.pay_by,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/checkout", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "the payment id to pay the order under at the gateway; the same one while the order is unpaid", body = CheckoutView),
        (status = 403, description = "not the order's buyer (an admin)", body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, description = "`order_not_payable`", body = super::error::ErrorBody)))]
pub async fn checkout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<CheckoutView>> {
    let checkout = state.app.payments.checkout(&user.actor(), id).await?;
    Ok(axum::Json(checkout.into()))
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)), request_body = PayBody,
    responses((status = 200, description = "paid once the gateway confirmed the payment; also the order as it is when this payment already paid it (a replay)", body = OrderView),
        (status = 402, description = "`payment_declined`", body = super::error::ErrorBody),
        (status = 403, description = "not the order's buyer (an admin)", body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`payment_amount_mismatch` (the payment is cancelled at the gateway), `payment_not_completed`, `payment_not_found`, `payment_key_reused`, `order_not_payable`", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody), (status = 503, description = "`payment_gateway_unavailable`: the gateway is failing or slow; retry after `Retry-After` seconds", body = super::error::ErrorBody)))]
pub async fn pay_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<PayBody>,
) -> ApiResult<axum::Json<OrderView>> {
    let claim = PaymentClaim {
        payment_key: body.payment_key,
        amount: body.amount,
    };
    let paid = state.app.payments.pay(&user.actor(), id, &claim).await?;
    Ok(axum::Json(paid.into()))
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`order_not_cancellable`, `order_already_shipped`", body = super::error::ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = state.app.orders.cancel(&user.actor(), id).await?;
    Ok(axum::Json(order.into()))
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/confirm", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`order_not_confirmable`: the order is not `paid`; `order_not_delivered`: a partner order is neither delivered nor cancelled yet", body = super::error::ErrorBody)))]
pub async fn confirm_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = state.app.orders.confirm(&user.actor(), id).await?;
    Ok(axum::Json(order.into()))
}

fn sse_event(change: &OrderStatusChanged) -> Event {
    Event::default()
        .event("status")
        .json_data(change)
        .unwrap_or_default()
}

/// The stream's next event for `update`, or `None` for a status it already sent (`last`).
fn next_sse_event(update: &OrderUpdate, last: &mut OrderStatus) -> Option<Event> {
    match update {
        OrderUpdate::Status(change) if change.status == *last => None,
        OrderUpdate::Status(change) => {
            *last = change.status;
            Some(sse_event(change))
        }
        OrderUpdate::PartnerOrder(change) => Some(
            Event::default()
                .event("partner_order")
                .json_data(change)
                .unwrap_or_default(),
        ),
    }
}

#[utoipa::path(get, path = "/api/v1/orders/{id}/events", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "text/event-stream: `status` events with OrderStatusChanged JSON (the current status first), and a `partner_order` event {partner_order_id, order_id, user_id, partner_id, status, carrier, tracking_number, at} for each step of a partner order (preparing, shipped, delivered, cancelled, returned); the server ends it after `stream_max_age_secs` (reconnect)"), (status = 404, body = super::error::ErrorBody),
        (status = 429, description = "`too_many_streams`: the user already holds `streams_per_user_max` live streams on this node", body = super::error::ErrorBody)))]
pub async fn order_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let slot = state.streams.open(user.id())?;
    // Subscribe before reading so no change can slip between the read and the stream.
    let updates = state.hub.subscribe(id);
    let order = state.app.orders.visible(&user.actor(), id).await?;
    if order.user_id != user.id() {
        return Err(ApiError::not_found("order"));
    }
    let current = OrderStatusChanged {
        order_id: order.id,
        user_id: order.user_id,
        status: order.status,
        reason: order.cancel_reason.clone(),
        at: order.updated_at,
    };
    let first = sse_event(&current);
    let stop = state.shutdown.clone();
    let rest = stream::unfold(
        (updates, stop, current.status),
        |(mut updates, mut stop, mut last)| async move {
            loop {
                tokio::select! {
                    received = updates.recv() => match received {
                        Ok(update) => match next_sse_event(&update, &mut last) {
                            Some(event) => return Some((Ok(event), (updates, stop, last))),
                            None => continue,
                        },
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = stop.changed() => return None,
                }
            }
        },
    );
    let events = stream::once(async move { Ok(first) }).chain(rest);
    Ok(Sse::new(slot.bound(events)).keep_alive(KeepAlive::default()))
}
