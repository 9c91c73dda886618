//! The routes, and the middleware every request passes: metrics and a span per request,
//! the request timeout, the body limit, and rate limits on the API routes.

use super::admin_page;
use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use super::{
    auth, catalog, coupons, dashboard, dead_letters, fulfilment, jobs, limits, openapi, ops,
    orders, points, queue, settlement, waitlist, webhooks,
};
use crate::metrics::{method_label, HttpLabels, RouteLabels};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::time::{Duration, Instant};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/partners", post(catalog::create_partner))
        .route("/partners/{id}/sellers", post(catalog::create_seller))
        .route("/partners/{id}/orders", get(fulfilment::partner_orders))
        .route(
            "/partners/{id}/settlements",
            get(settlement::partner_settlements),
        )
        .route("/settlements/{id}", get(settlement::get_settlement))
        .route(
            "/settlements/{id}/lines.csv",
            get(settlement::settlement_lines_csv),
        )
        .route("/partner-orders/{id}/prepare", post(fulfilment::prepare))
        .route("/partner-orders/{id}/ship", post(fulfilment::ship))
        .route("/partner-orders/{id}/deliver", post(fulfilment::deliver))
        .route("/partner-orders/{id}/cancel", post(fulfilment::cancel))
        .route("/partner-orders/{id}/return", post(fulfilment::return_part))
        .route(
            "/products",
            post(catalog::create_product).get(catalog::list_products),
        )
        .route(
            "/products/batch",
            // A catalog import is larger than any other request: it alone gets the
            // batch's own body limit (this layer overrides the router-wide one).
            post(catalog::create_products).layer(DefaultBodyLimit::max(
                state.config.catalog_batch_body_limit_bytes,
            )),
        )
        .route(
            "/products/{id}",
            get(catalog::get_product).patch(catalog::update_product),
        )
        .route("/products/{id}/inbound", post(catalog::inbound))
        .route("/products/{id}/adjust", post(catalog::adjust))
        .route("/products/{id}/stock", get(catalog::stock))
        .route("/products/{id}/movements", get(catalog::movements))
        .route(
            "/products/{id}/waitlist",
            post(waitlist::join_waitlist).delete(waitlist::leave_waitlist),
        )
        .route("/me/waitlist", get(waitlist::my_waitlist))
        .route("/coupons", post(coupons::create_campaign))
        .route("/coupons/{id}", get(coupons::get_campaign))
        .route("/coupons/{id}/issue", post(coupons::issue_coupon))
        .route("/me/coupons", get(coupons::my_coupons))
        .route("/me/events", get(waitlist::my_events))
        .route("/me/points", get(points::my_points))
        .route("/me/points/history", get(points::my_points_history))
        .route("/admin/points/grant", post(points::grant_points))
        .route("/admin/points/adjust", post(points::adjust_points))
        .route("/admin/jobs", get(jobs::list_jobs))
        .route("/admin/dashboard", get(dashboard::dashboard))
        .route("/admin/dead-letters", get(dead_letters::list_dead_letters))
        .route(
            "/admin/dead-letters/{id}",
            get(dead_letters::get_dead_letter).delete(dead_letters::discard_dead_letter),
        )
        .route(
            "/admin/dead-letters/{id}/replay",
            post(dead_letters::replay_dead_letter),
        )
        .route(
            "/orders",
            post(orders::place_order).get(orders::list_orders),
        )
        .route("/orders/{id}", get(orders::get_order))
        .route("/orders/{id}/checkout", post(orders::checkout))
        .route("/orders/{id}/pay", post(orders::pay_order))
        .route("/payments/portone/webhook", post(webhooks::portone_webhook))
        .route("/orders/{id}/cancel", post(orders::cancel_order))
        .route("/orders/{id}/confirm", post(orders::confirm_order))
        .route("/orders/{id}/events", get(orders::order_events))
        .route("/queue/{ticket}", get(queue::get_ticket))
        .route("/queue/{ticket}/events", get(queue::ticket_events));
    // Matched API routes only: an unknown path is a cheap 404 either way.
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        limits::rate_limit,
    ));
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/admin", get(admin_page::index))
        .route("/admin/app.js", get(admin_page::script))
        .route("/admin/style.css", get(admin_page::style))
        .merge(openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// Bounds the time to produce a response (a live stream's body is not bounded).
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(ErrorCode::RequestTimeout, "request took too long").into_response(),
    }
}

/// Counts requests and their latency by matched route, inside a span per request. Both
/// labels are bounded: the route is a template of the router or `unmatched`, the method a
/// standard one or `OTHER`.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method().as_str());
    let started = Instant::now();
    let span = tracing::info_span!("request", %method, %route);
    let response = tracing::Instrument::instrument(next.run(req), span).await;
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .http_request_duration_seconds
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}
