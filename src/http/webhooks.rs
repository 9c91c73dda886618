//! `POST /api/v1/payments/portone/webhook`: PortOne tells us a payment changed. No bearer
//! token — the Standard Webhooks signature over the raw body is the credential, checked
//! before anything in the body is read (`app::payments` webhooks).

use super::error::ApiResult;
use super::extract::RawBody;
use super::state::AppState;
use crate::app::payments::WebhookDelivery;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

/// What the delivery did: `applied` (an order paid or refunded), `replayed` (this
/// `webhook-id` was processed before) or `ignored` (nothing to do).
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub outcome: &'static str,
}

#[utoipa::path(post, path = "/api/v1/payments/portone/webhook", tag = "payments",
    request_body(content = String, content_type = "application/json", description = "PortOne V2 webhook: `{type, timestamp, data: {paymentId, storeId, transactionId}}`"),
    params(("webhook-id" = String, Header), ("webhook-timestamp" = String, Header, description = "seconds since the epoch, within 5 minutes of now"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>`, several separated by spaces")),
    responses((status = 200, description = "verified and processed, or a redelivery", body = WebhookView),
        (status = 401, description = "`invalid_signature`: missing, stale or wrong signature; nothing changed", body = super::error::ErrorBody),
        (status = 404, description = "no webhooks with the simulated gateway", body = super::error::ErrorBody),
        (status = 409, description = "`payment_not_completed`: the gateway does not show it paid yet; deliver again", body = super::error::ErrorBody),
        (status = 422, description = "signed, but not a PortOne webhook", body = super::error::ErrorBody),
        (status = 503, description = "`payment_gateway_unavailable`: deliver again", body = super::error::ErrorBody)))]
pub async fn portone_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<axum::Json<WebhookView>> {
    // A header that is not text is as good as missing: the signature check refuses it.
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = WebhookDelivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: &body,
    };
    let outcome = state.app.payments.portone_webhook(&delivery).await?;
    Ok(axum::Json(WebhookView {
        outcome: outcome.as_str(),
    }))
}
