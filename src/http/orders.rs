//! Orders: placement (through the batching writer), reads, payment, cancellation and the
//! live status stream.

use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{AuthUser, IdempotencyHeader, Json, Page, Path};
use super::PageView;
use crate::domain::allocation::{Line, OrderRequest};
use crate::domain::events::OrderStatusChanged;
use crate::domain::order::CancelReason;
use crate::domain::{DomainError, OrderStatus, Quantity, Role, Timestamp, Won};
use crate::metrics::ReasonLabels;
use crate::payment::GatewayOutcome;
use crate::placement::Placed;
use crate::server::AppState;
use crate::store::{OrderRecord, PaymentAttempt, PaymentOutcome, PlaceOutcome, TransitionOutcome};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use utoipa::ToSchema;

pub const MAX_ORDER_ITEMS: usize = 50;
pub const MAX_PAYMENT_KEY_BYTES: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemBody {
    pub product_id: i64,
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderBody {
    pub items: Vec<OrderItemBody>,
    /// One of the buyer's coupons (a user coupon id from `GET /me/coupons`): held with the
    /// order, used when it is paid, returned when it is cancelled, expires or is refunded.
    pub coupon_id: Option<i64>,
    /// Points to spend (1 point = 1 won), taken after the coupon from the lots that expire
    /// first; held, spent, released and refunded with the order.
    pub points: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    /// The gateway's identifier of the buyer's payment.
    pub payment_key: String,
    /// What the buyer paid, in won; must equal the order's `payable`.
    pub amount: i64,
}

#[derive(Serialize, ToSchema)]
pub struct OrderItemView {
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PartnerOrderView {
    pub id: i64,
    pub partner_id: i64,
    pub status: String,
    pub subtotal: i64,
    pub items: Vec<OrderItemView>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderView {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub total: i64,
    /// The user coupon the order holds or used; `null` when none.
    pub coupon_id: Option<i64>,
    pub discount: i64,
    pub points_used: i64,
    pub payable: i64,
    #[schema(value_type = String, format = DateTime)]
    pub pay_by: Timestamp,
    /// When the payment was accepted; `null` until the order is paid.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Timestamp>,
    pub cancel_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub partner_orders: Vec<PartnerOrderView>,
}

impl From<OrderRecord> for OrderView {
    fn from(o: OrderRecord) -> Self {
        OrderView {
            id: o.id,
            user_id: o.user_id,
            status: o.status,
            total: o.total,
            coupon_id: o.coupon_id,
            discount: o.discount,
            points_used: o.points_used,
            payable: o.payable,
            pay_by: o.pay_by,
            paid_at: o.paid_at,
            cancel_reason: o.cancel_reason,
            created_at: o.created_at,
            updated_at: o.updated_at,
            partner_orders: o
                .partner_orders
                .into_iter()
                .map(|p| PartnerOrderView {
                    id: p.id,
                    partner_id: p.partner_id,
                    status: p.status,
                    subtotal: p.subtotal,
                    items: p
                        .items
                        .into_iter()
                        .map(|i| OrderItemView {
                            product_id: i.product_id,
                            quantity: i.quantity,
                            unit_price: i.unit_price,
                            line_total: i.line_total,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Parses the body into sorted, distinct lines, the coupon and the points, and a hash of
/// that canonical form, so the same items in another order count as the same request.
fn order_request(body: &PlaceOrderBody) -> Result<ParsedOrder, DomainError> {
    if body.items.is_empty() || body.items.len() > MAX_ORDER_ITEMS {
        return Err(DomainError::new(
            "items",
            format!("must hold 1 to {MAX_ORDER_ITEMS} items"),
        ));
    }
    let mut lines = Vec::with_capacity(body.items.len());
    for item in &body.items {
        if item.product_id <= 0 {
            return Err(DomainError::new("product_id", "must be a positive id"));
        }
        lines.push(Line {
            product_id: item.product_id,
            quantity: Quantity::new("quantity", item.quantity)?,
        });
    }
    lines.sort_by_key(|l| l.product_id);
    if lines.windows(2).any(|w| w[0].product_id == w[1].product_id) {
        return Err(DomainError::new("items", "each product may appear once"));
    }
    if body.coupon_id.is_some_and(|id| id <= 0) {
        return Err(DomainError::new("coupon_id", "must be a positive id"));
    }
    let points = Won::new("points", body.points.unwrap_or(0))?.get();
    let mut canonical: Vec<String> = lines
        .iter()
        .map(|l| format!("{}x{}", l.product_id, l.quantity.get()))
        .collect();
    // Appended only when present, so orders without them keep their earlier hashes.
    if let Some(coupon_id) = body.coupon_id {
        canonical.push(format!("c{coupon_id}"));
    }
    if points > 0 {
        canonical.push(format!("p{points}"));
    }
    let digest = Sha256::digest(canonical.join(",").as_bytes());
    Ok(ParsedOrder {
        lines,
        coupon_id: body.coupon_id,
        points,
        request_hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

struct ParsedOrder {
    lines: Vec<Line>,
    coupon_id: Option<i64>,
    points: i64,
    request_hash: String,
}

#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), request_body = PlaceOrderBody,
    params(("Idempotency-Key" = String, Header, description = "required; the same key and body return the same order")),
    responses((status = 201, body = OrderView), (status = 200, description = "replay of an earlier request", body = OrderView),
        (status = 202, description = "the writers are busy: waiting in the waiting room", body = super::queue::TicketView),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn place_order(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(body): Json<PlaceOrderBody>,
) -> ApiResult<Response> {
    user.require(&[Role::Buyer])?;
    let parsed = order_request(&body)?;
    let request = OrderRequest {
        user_id: user.id(),
        idempotency_key: key.as_str().to_owned(),
        request_hash: parsed.request_hash,
        lines: parsed.lines,
        coupon_id: parsed.coupon_id,
        points: parsed.points,
    };
    match state.placement.place(request).await? {
        Placed::Now(outcome) => outcome_response(outcome),
        Placed::Queued(ticket) => Ok(super::queue::queued_response(&state, &ticket)),
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

/// The order if the caller may see it; another buyer's order is "not found", so ids leak
/// nothing.
async fn visible_order(state: &AppState, user: &AuthUser, id: i64) -> ApiResult<OrderRecord> {
    let order = state
        .store
        .order(id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.user_id != user.id() && !user.is_admin() {
        return Err(ApiError::not_found("order"));
    }
    Ok(order)
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<OrderView>> {
    Ok(axum::Json(visible_order(&state, &user, id).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), params(super::extract::PageQuery),
    responses((status = 200, body = PageView<OrderView>)))]
pub async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<OrderView>>> {
    let owner = (!user.is_admin()).then(|| user.id());
    Ok(axum::Json(
        state.store.list_orders(owner, page).await?.into(),
    ))
}

fn count_payment(state: &AppState, outcome: PaymentOutcome) {
    state
        .metrics
        .payments
        .get_or_create(&ReasonLabels {
            reason: outcome.as_str().into(),
        })
        .inc();
}

async fn record_failed_payment(
    state: &AppState,
    order: &OrderRecord,
    body: &PayBody,
    outcome: PaymentOutcome,
    detail: String,
) -> ApiResult<()> {
    count_payment(state, outcome);
    let attempt = PaymentAttempt {
        order_id: order.id,
        payment_key: body.payment_key.clone(),
        amount: body.amount,
        outcome,
        detail: Some(detail),
    };
    Ok(state
        .store
        .record_payment(&attempt, Timestamp::now())
        .await?)
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)), request_body = PayBody,
    responses((status = 200, body = OrderView), (status = 402, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn pay_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<PayBody>,
) -> ApiResult<axum::Json<OrderView>> {
    if body.payment_key.is_empty() || body.payment_key.len() > MAX_PAYMENT_KEY_BYTES {
        return Err(DomainError::new(
            "payment_key",
            format!("must be 1 to {MAX_PAYMENT_KEY_BYTES} bytes"),
        )
        .into());
    }
    let order = visible_order(&state, &user, id).await?;
    if order.user_id != user.id() {
        return Err(ApiError::forbidden());
    }
    let not_payable = || ApiError::new(ErrorCode::OrderNotPayable, "order is not awaiting payment");
    if order.status != OrderStatus::PendingPayment || order.pay_by <= Timestamp::now() {
        return Err(not_payable());
    }
    let mismatch = || {
        ApiError::new(
            ErrorCode::PaymentAmountMismatch,
            "amount does not match the order's payable amount",
        )
    };
    if body.amount != order.payable {
        record_failed_payment(
            &state,
            &order,
            &body,
            PaymentOutcome::AmountMismatch,
            format!("claimed {}", body.amount),
        )
        .await?;
        return Err(mismatch());
    }
    let outcome = state
        .gateway
        .confirm(&body.payment_key, order.id, order.payable)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "payment gateway unavailable");
            ApiError::new(
                ErrorCode::Unavailable,
                "payment gateway unavailable, retry shortly",
            )
        })?;
    match outcome {
        GatewayOutcome::Declined { reason } => {
            record_failed_payment(&state, &order, &body, PaymentOutcome::Declined, reason).await?;
            return Err(ApiError::new(
                ErrorCode::PaymentDeclined,
                "the payment was declined",
            ));
        }
        GatewayOutcome::Approved { amount } if amount != order.payable => {
            // The gateway captured something else than we sell: give it back.
            let _ = state.gateway.refund(order.id, amount).await;
            record_failed_payment(
                &state,
                &order,
                &body,
                PaymentOutcome::AmountMismatch,
                format!("gateway captured {amount}"),
            )
            .await?;
            return Err(mismatch());
        }
        GatewayOutcome::Approved { .. } => {}
    }
    let attempt = PaymentAttempt {
        order_id: order.id,
        payment_key: body.payment_key.clone(),
        amount: order.payable,
        outcome: PaymentOutcome::Approved,
        detail: None,
    };
    match state
        .store
        .mark_paid(order.id, &attempt, Timestamp::now())
        .await?
    {
        TransitionOutcome::Done(paid) => {
            count_payment(&state, PaymentOutcome::Approved);
            state.metrics.orders_paid.inc();
            state.metrics.order_points(&paid);
            state.outbox_wake.notify_one();
            Ok(axum::Json(paid.into()))
        }
        TransitionOutcome::NotFound => Err(ApiError::not_found("order")),
        TransitionOutcome::Refused(_) => {
            // Captured, but the deadline passed (or a cancel won) meanwhile: void the capture.
            if let Err(e) = state.gateway.refund(order.id, order.payable).await {
                tracing::error!(order_id = order.id, error = %e, "could not void a capture for an unpayable order");
            }
            record_failed_payment(
                &state,
                &order,
                &body,
                PaymentOutcome::Voided,
                "order no longer payable".into(),
            )
            .await?;
            Err(not_payable())
        }
    }
}

/// Returns a refunded order's money through the gateway. The order is already refunded in
/// the books (stock returned, `order.refunded` written); a gateway failure is logged and
/// counted for reconciliation rather than undoing that.
async fn refund(state: &AppState, order: &OrderRecord) {
    let outcome = match state.gateway.refund(order.id, order.payable).await {
        Ok(()) => "refunded",
        Err(e) => {
            tracing::error!(order_id = order.id, error = %e, "gateway refund failed; reconcile by hand");
            "refund_failed"
        }
    };
    state
        .metrics
        .payments
        .get_or_create(&ReasonLabels {
            reason: outcome.into(),
        })
        .inc();
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 409, body = super::error::ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = visible_order(&state, &user, id).await?;
    let not_cancellable = || {
        ApiError::new(
            ErrorCode::OrderNotCancellable,
            "order can no longer be cancelled",
        )
    };
    if !matches!(
        order.status,
        OrderStatus::PendingPayment | OrderStatus::Paid
    ) {
        return Err(not_cancellable());
    }
    // The transition comes first: exactly one caller can move an order out of `paid`, so the
    // money goes back at most once, and never for an order a confirm got to first.
    match state
        .store
        .cancel_order(id, CancelReason::Requested, Timestamp::now())
        .await?
    {
        TransitionOutcome::Done(order) => {
            state.metrics.order_points(&order);
            let reason = if order.status == OrderStatus::Refunded {
                refund(&state, &order).await;
                "refunded"
            } else {
                "requested"
            };
            state
                .metrics
                .orders_cancelled
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
            state.events.caught_up().await;
            Ok(axum::Json(order.into()))
        }
        TransitionOutcome::NotFound => Err(ApiError::not_found("order")),
        TransitionOutcome::Refused(_) => Err(not_cancellable()),
    }
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/confirm", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`order_not_confirmable`: the order is not `paid`", body = super::error::ErrorBody)))]
pub async fn confirm_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = visible_order(&state, &user, id).await?;
    let by = if order.user_id == user.id() {
        "buyer"
    } else {
        "admin"
    };
    let not_confirmable = || {
        ApiError::new(
            ErrorCode::OrderNotConfirmable,
            "only a paid order can be confirmed",
        )
    };
    // The store decides from the order's state in its own transaction, so a confirmation
    // racing the sweeper's (or a refund) happens at most once.
    match state.store.confirm_order(id, Timestamp::now()).await? {
        TransitionOutcome::Done(order) => {
            state
                .metrics
                .orders_confirmed
                .get_or_create(&ReasonLabels { reason: by.into() })
                .inc();
            state.outbox_wake.notify_one();
            Ok(axum::Json(order.into()))
        }
        TransitionOutcome::NotFound => Err(ApiError::not_found("order")),
        TransitionOutcome::Refused(_) => Err(not_confirmable()),
    }
}

fn sse_event(change: &OrderStatusChanged) -> Event {
    Event::default()
        .event("status")
        .json_data(change)
        .unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/orders/{id}/events", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "text/event-stream of `status` events with OrderStatusChanged JSON"), (status = 404, body = super::error::ErrorBody)))]
pub async fn order_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribe before reading so no change can slip between the read and the stream.
    let updates = state.hub.subscribe(id);
    let order = visible_order(&state, &user, id).await?;
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
                        Ok(change) if change.status == last => continue,
                        Ok(change) => {
                            last = change.status;
                            return Some((Ok(sse_event(&change)), (updates, stop, last)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = stop.changed() => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream::once(async move { Ok(first) }).chain(rest))
        .keep_alive(KeepAlive::default()))
}
