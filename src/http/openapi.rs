//! The OpenAPI document, generated from the handlers' annotations, and Swagger UI.
//!
//! scripts/fuzz.sh holds the server to this document, so it must say every status a route
//! can answer. The errors a route answers because of how it is built rather than what it
//! does — its extractors (token, path, query, JSON body, `Idempotency-Key`) and the
//! middleware (rate limits, the request timeout, an unavailable database) — are added by
//! [`CommonErrors`] from each operation's shape, so no annotation can forget one; and every
//! 4xx and 5xx is documented as an [`error::ErrorBody`], the one shape errors have.

use super::state::AppState;
use super::{
    auth, catalog, coupons, dashboard, dead_letters, error, fulfilment, jobs, ops, order_view,
    orders, points, queue, settlement, waitlist, webhooks, PageView,
};
use axum::Router;
use error::ErrorCode;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Stampede", description = "Commerce backend for limited-edition drops and flash sales"),
    paths(
        auth::signup, auth::login, auth::refresh, auth::logout, auth::me,
        catalog::create_partner, catalog::create_seller, catalog::create_product, catalog::create_products, catalog::list_products,
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
        jobs::list_jobs, dashboard::dashboard, webhooks::portone_webhook, settlement::partner_settlements, settlement::get_settlement, settlement::settlement_lines_csv,
    ),
    components(schemas(error::ErrorBody, error::ErrorCode, PageView<catalog::ProductView>, PageView<order_view::OrderView>, PageView<catalog::MovementView>, PageView<waitlist::WaitlistEntryView>, PageView<coupons::UserCouponView>, PageView<points::PointsLedgerView>, PageView<dead_letters::DeadLetterView>, PageView<order_view::PartnerOrderView>, PageView<settlement::SettlementView>, PageView<settlement::SettlementLineView>)),
    modifiers(&BearerAuth, &CommonErrors),
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

/// Adds to each operation the errors its shape implies (see the module comment), and makes
/// every error response an `ErrorBody`.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/v1/");
            for operation in operations(item) {
                for (status, codes) in shape_errors(api, operation) {
                    let description = codes
                        .iter()
                        .map(|code| format!("`{}`", code_name(*code)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let responses = &mut operation.responses.responses;
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(Response::new(description)));
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let (true, RefOr::T(response)) = (is_error(status), response) {
                        if response.content.is_empty() {
                            let body = ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build();
                            response.content.insert("application/json".into(), body);
                        }
                    }
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

fn is_error(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5')
}

fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{code:?}"),
    }
}

/// The statuses an operation can answer by its shape alone, with their codes. `api`: under
/// `/api/v1`, where the rate limits apply.
fn shape_errors(api: bool, operation: &Operation) -> Vec<(u16, Vec<ErrorCode>)> {
    use ErrorCode::*;
    let mut errors: Vec<(u16, Vec<ErrorCode>)> = vec![(408, vec![RequestTimeout])];
    let mut add = |status: u16, code: ErrorCode| match errors.iter_mut().find(|e| e.0 == status) {
        Some((_, codes)) if codes.contains(&code) => {}
        Some((_, codes)) => codes.push(code),
        None => errors.push((status, vec![code])),
    };
    if api {
        add(429, RateLimited);
        add(503, Unavailable);
    }
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        add(401, Unauthorized);
        add(401, InvalidToken);
    }
    for parameter in operation.parameters.iter().flatten() {
        match parameter.parameter_in {
            ParameterIn::Path => add(400, InvalidPath),
            ParameterIn::Query => add(400, InvalidQuery),
            ParameterIn::Header if parameter.name == "Idempotency-Key" => {
                add(400, IdempotencyKeyRequired);
                add(422, ValidationFailed);
            }
            _ => {}
        }
    }
    if let Some(body) = &operation.request_body {
        add(413, PayloadTooLarge);
        // A typed JSON body (`extract::Json`, a schema of its own) is refused for its
        // syntax, its content type and its fields; a raw one is read by its handler.
        let typed = body
            .content
            .get("application/json")
            .is_some_and(|c| matches!(c.schema, Some(RefOr::Ref(_))));
        if typed {
            add(400, MalformedJson);
            add(415, UnsupportedMediaType);
            add(422, ValidationFailed);
        }
    }
    errors
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/api/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("path item");
                item.iter()
                    .map(move |(method, op)| (format!("{} {path}", method.to_uppercase()), op))
            })
            .collect()
    }

    #[test]
    fn every_error_response_is_an_error_body() {
        let doc = document();
        for (operation, op) in operations(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses.iter().filter(|(s, _)| is_error(s)) {
                let content = response["content"].as_object();
                let schemas: Vec<&Value> = content
                    .into_iter()
                    .flat_map(|c| c.values().map(|media| &media["schema"]["$ref"]))
                    .collect();
                assert_eq!(
                    schemas,
                    [&Value::from("#/components/schemas/ErrorBody")],
                    "{operation} {status}: {response}"
                );
            }
        }
    }

    #[test]
    fn every_operation_documents_the_errors_of_its_shape() {
        let doc = document();
        for (operation, op) in operations(&doc) {
            let has = |status: &str| op["responses"].get(status).is_some();
            assert!(has("408"), "{operation}: the request timeout");
            if operation.contains(" /api/v1/") {
                assert!(
                    has("429") && has("503"),
                    "{operation}: rate limits, database"
                );
            }
            if op.get("security").is_some() {
                assert!(has("401"), "{operation}: a missing or bad token");
            }
            let json_body = op["requestBody"]["content"]["application/json"]["schema"]
                .get("$ref")
                .is_some();
            if json_body {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{operation}: a refused JSON body, {status}");
                }
            }
        }
    }

    #[test]
    fn shape_errors_name_their_codes() {
        let doc = document();
        let placed = &doc["paths"]["/api/v1/orders"]["post"]["responses"];
        assert_eq!(placed["415"]["description"], "`unsupported_media_type`");
        assert_eq!(
            placed["401"]["description"],
            "`unauthorized`, `invalid_token`"
        );
        let listed = &doc["paths"]["/api/v1/products"]["get"]["responses"];
        assert_eq!(listed["400"]["description"], "`invalid_query`");
        assert!(listed.get("401").is_none(), "the listing is public");
    }

    /// Found by the fuzzer: `IntoParams` puts fields in the path unless told otherwise, so
    /// `?page&size&status` were documented as required path parameters and never sent.
    #[test]
    fn paging_and_filters_are_optional_query_parameters() {
        let doc = document();
        for (operation, op) in operations(&doc) {
            for parameter in op["parameters"].as_array().into_iter().flatten() {
                if ["page", "size", "status"].contains(&parameter["name"].as_str().unwrap_or("")) {
                    assert_eq!(parameter["in"], "query", "{operation}: {parameter}");
                    assert_eq!(parameter["required"], false, "{operation}: {parameter}");
                }
            }
        }
    }
}
