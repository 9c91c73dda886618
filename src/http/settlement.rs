//! Settlement statements for the partner's sellers and admins: a partner's statements, one
//! statement with its lines paged, and its lines as CSV. The use case is
//! `app::settlement`; statements are made by the daily job and `stampede settle`.

use super::error::ApiResult;
use super::extract::{AuthUser, Page, Path};
use super::page::PageView;
use super::state::AppState;
use crate::domain::settlement::LineKind;
use crate::domain::Timestamp;
use crate::store::{SettlementLineRecord, SettlementRecord};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

/// One partner's statement for one business day. `net = gross − commission`.
#[derive(Serialize, ToSchema)]
pub struct SettlementView {
    pub id: i64,
    pub partner_id: i64,
    /// `YYYY-MM-DD` in the settlement time zone (`STAMPEDE_SETTLEMENT_TIMEZONE`).
    pub business_date: String,
    /// Sum of the lines' subtotals (coupons and points are funded by the platform).
    pub gross: i64,
    /// Sum of the lines' commissions, each rounded half up.
    pub commission: i64,
    pub net: i64,
    pub line_count: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<SettlementRecord> for SettlementView {
    fn from(s: SettlementRecord) -> Self {
        SettlementView {
            id: s.id,
            partner_id: s.partner_id,
            business_date: s.business_date.to_string(),
            gross: s.gross,
            commission: s.commission,
            net: s.net,
            line_count: s.line_count,
            created_at: s.created_at,
        }
    }
}

/// One entry of the partner's books on a statement, at the rate its order was placed with:
/// a purchase confirmed that day (`sale`), or a confirmed part returned that day
/// (`refund`, the sale's amounts negated — a refund after its sale's statement lands on
/// the statement of the day it happened).
#[derive(Serialize, ToSchema)]
pub struct SettlementLineView {
    pub kind: LineKind,
    pub partner_order_id: i64,
    pub order_id: i64,
    pub subtotal: i64,
    pub commission_rate_bps: i64,
    /// `subtotal × commission_rate_bps / 10000`, rounded half up.
    pub commission: i64,
    pub net: i64,
    /// When the purchase was confirmed.
    #[schema(value_type = String, format = DateTime)]
    pub confirmed_at: Timestamp,
    /// When the entry was written: the confirmation for a sale, the return for a refund.
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: Timestamp,
}

impl From<SettlementLineRecord> for SettlementLineView {
    fn from(l: SettlementLineRecord) -> Self {
        SettlementLineView {
            kind: l.kind,
            partner_order_id: l.partner_order_id,
            order_id: l.order_id,
            subtotal: l.subtotal,
            commission_rate_bps: l.commission_rate_bps,
            commission: l.commission,
            net: l.net,
            confirmed_at: l.confirmed_at,
            recorded_at: l.recorded_at,
        }
    }
}

/// A statement with one page of its lines (`?page&size`).
#[derive(Serialize, ToSchema)]
pub struct StatementView {
    #[serde(flatten)]
    pub settlement: SettlementView,
    pub lines: PageView<SettlementLineView>,
}

#[utoipa::path(get, path = "/api/v1/partners/{id}/settlements", tag = "settlement", security(("bearer" = [])),
    params(("id" = i64, Path), super::extract::PageQuery),
    responses((status = 200, description = "the partner's statements, latest business day first", body = PageView<SettlementView>),
        (status = 400, description = "`invalid_query`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not this partner's seller nor an admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner", body = super::error::ErrorBody)))]
pub async fn partner_settlements(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<SettlementView>>> {
    let listed = state
        .app
        .settlement
        .partner_settlements(&user.actor(), id, page)
        .await?;
    Ok(axum::Json(listed.into()))
}

#[utoipa::path(get, path = "/api/v1/settlements/{id}", tag = "settlement", security(("bearer" = [])),
    params(("id" = i64, Path), super::extract::PageQuery),
    responses((status = 200, description = "the statement with a page of its lines, in the order they were recorded", body = StatementView),
        (status = 400, description = "`invalid_query`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such statement, or another partner's", body = super::error::ErrorBody)))]
pub async fn get_settlement(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Page(page): Page,
) -> ApiResult<axum::Json<StatementView>> {
    let statement = state
        .app
        .settlement
        .statement(&user.actor(), id, page)
        .await?;
    Ok(axum::Json(StatementView {
        settlement: statement.settlement.into(),
        lines: statement.lines.into(),
    }))
}

#[utoipa::path(get, path = "/api/v1/settlements/{id}/lines.csv", tag = "settlement", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "every line of the statement as CSV (RFC 4180, a header row, CRLF), in the order they were recorded", content_type = "text/csv", body = String),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such statement, or another partner's", body = super::error::ErrorBody)))]
pub async fn settlement_lines_csv(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    let (settlement, lines) = state
        .app
        .settlement
        .statement_lines(&user.actor(), id)
        .await?;
    let filename = format!(
        "attachment; filename=\"settlement-{}-{}.csv\"",
        settlement.partner_id, settlement.business_date
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        lines_csv(&lines),
    ))
}

const CSV_HEADER: [&str; 9] = [
    "kind",
    "partner_order_id",
    "order_id",
    "subtotal",
    "commission_rate_bps",
    "commission",
    "net",
    "confirmed_at",
    "recorded_at",
];

/// RFC 4180: one record per line, CRLF, every field escaped.
fn lines_csv(lines: &[SettlementLineRecord]) -> String {
    let mut out = String::with_capacity(64 * (lines.len() + 1));
    push_record(&mut out, CSV_HEADER.iter().map(|h| (*h).to_owned()));
    for l in lines {
        push_record(
            &mut out,
            [
                l.kind.as_str().to_owned(),
                l.partner_order_id.to_string(),
                l.order_id.to_string(),
                l.subtotal.to_string(),
                l.commission_rate_bps.to_string(),
                l.commission.to_string(),
                l.net.to_string(),
                l.confirmed_at.to_rfc3339(),
                l.recorded_at.to_rfc3339(),
            ],
        );
    }
    out
}

fn push_record(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_field(&field));
    }
    out.push_str("\r\n");
}

/// A field quoted when it holds a comma, a quote or a line break, its quotes doubled; a
/// field a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is prefixed with
/// `'` — no field here starts so today except a negative amount, which is left a number.
fn csv_field(field: &str) -> std::borrow::Cow<'_, str> {
    let formula = field.starts_with(['=', '+', '@'])
        || (field.starts_with('-') && field.parse::<i64>().is_err());
    let field: std::borrow::Cow<'_, str> = if formula {
        format!("'{field}").into()
    } else {
        field.into()
    };
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("12500"), "12500");
        assert_eq!(csv_field("-300"), "-300");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-1+2"), "'-1+2");
        assert_eq!(csv_field("=1,2"), "\"'=1,2\"");
    }

    #[test]
    fn a_statement_is_a_header_and_a_record_per_line() {
        let line = SettlementLineRecord {
            kind: LineKind::Refund,
            partner_order_id: 7,
            order_id: 3,
            subtotal: -1005,
            commission_rate_bps: 1000,
            commission: -101,
            net: -904,
            confirmed_at: Timestamp::from_millis(0),
            recorded_at: Timestamp::from_millis(86_400_000),
        };
        assert_eq!(
            lines_csv(&[line]),
            "kind,partner_order_id,order_id,subtotal,commission_rate_bps,commission,net,\
             confirmed_at,recorded_at\r\n\
             refund,7,3,-1005,1000,-101,-904,1970-01-01T00:00:00Z,1970-01-02T00:00:00Z\r\n"
        );
    }
}
