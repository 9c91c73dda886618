//! The OpenAPI document, generated from the handlers' annotations, and Swagger UI.

use super::state::AppState;
use super::{
    auth, catalog, coupons, dead_letters, error, fulfilment, jobs, ops, order_view, orders, points,
    queue, settlement, waitlist, webhooks, PageView,
};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Stampede", description = "Commerce backend for limited-edition drops and flash sales"),
    paths(
        auth::signup, auth::login, auth::refresh, auth::logout, auth::me,
        catalog::create_partner, catalog::create_seller, catalog::create_product, catalog::list_products,
        catalog::get_product, catalog::update_product, catalog::inbound, catalog::adjust, catalog::stock, catalog::movements,
        orders::place_order, orders::get_order, orders::list_orders, orders::checkout, orders::pay_order, orders::cancel_order,
        orders::confirm_order, orders::order_events, queue::get_ticket, queue::ticket_events, ops::healthz, ops::readyz, ops::metrics,
        waitlist::join_waitlist, waitlist::leave_waitlist, waitlist::my_waitlist, waitlist::my_events,
        coupons::create_campaign, coupons::get_campaign, coupons::issue_coupon, coupons::my_coupons,
        points::my_points, points::my_points_history, points::grant_points, points::adjust_points,
        dead_letters::list_dead_letters, dead_letters::get_dead_letter, dead_letters::replay_dead_letter,
        dead_letters::discard_dead_letter,
        fulfilment::prepare, fulfilment::ship, fulfilment::deliver, fulfilment::cancel,
        fulfilment::return_part, fulfilment::partner_orders,
        jobs::list_jobs, webhooks::portone_webhook, settlement::partner_settlements, settlement::get_settlement, settlement::settlement_lines_csv,
    ),
    components(schemas(error::ErrorBody, error::ErrorCode, PageView<catalog::ProductView>, PageView<order_view::OrderView>, PageView<catalog::MovementView>, PageView<waitlist::WaitlistEntryView>, PageView<coupons::UserCouponView>, PageView<points::PointsLedgerView>, PageView<dead_letters::DeadLetterView>, PageView<order_view::PartnerOrderView>, PageView<settlement::SettlementView>, PageView<settlement::SettlementLineView>)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/api/openapi.json", ApiDoc::openapi()))
}
