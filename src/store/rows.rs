//! Row mapping both backends share: each record read column by column, by name, the same
//! way from a SQLite or a PostgreSQL row. Both schemas store timestamps as epoch
//! milliseconds and statuses as their `as_str` text; a value no parser knows is
//! [`StoreError::Corrupt`].

use super::accounts::UserRecord;
use super::catalog::{MovementRecord, PartnerRecord, ProductRecord};
use super::checkouts::{CheckoutRecord, CheckoutStatus};
use super::coupons::{CampaignRecord, UserCouponRecord};
use super::dead_letters::DeadLetterRecord;
use super::error::{StoreError, StoreResult};
use super::fulfilment::PartnerOrderStates;
use super::leases::JobRunRecord;
use super::orders::{OrderItemRecord, OrderRecord, PartnerOrderRecord};
use super::points::{PointsLedgerRecord, PointsOperationKind, PointsOperationRecord};
use super::settlement::{SettlementLineRecord, SettlementRecord, StatementMismatch};
use super::waitlist::WaitlistEntryRecord;
use crate::domain::coupon::{CouponStatus, DiscountType};
use crate::domain::dead_letter::DeadLetterStatus;
use crate::domain::events::Event;
use crate::domain::fulfilment::PartnerOrderStatus;
use crate::domain::order::MovementKind;
use crate::domain::points::PointsKind;
use crate::domain::settlement::{BusinessDate, LineKind};
use crate::domain::waitlist::WaitlistStatus;
use crate::domain::{OrderStatus, Role, Timestamp};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::collections::HashMap;

/// The column reads the mappings need. Implemented for every row type whose database
/// decodes integers and text, i.e. `SqliteRow` and `PgRow`.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;

    /// An epoch-milliseconds column.
    fn ts(&self, column: &str) -> Result<Timestamp, sqlx::Error> {
        self.int(column).map(Timestamp::from_millis)
    }

    fn opt_ts(&self, column: &str) -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(self.opt_int(column)?.map(Timestamp::from_millis))
    }
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
}

/// Parses a stored enum value, or reports the row as corrupt naming `what` it should be.
fn parse<T>(what: &str, raw: &str, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<T> {
    parse(raw).ok_or_else(|| StoreError::Corrupt(format!("{what} {raw:?}")))
}

pub(crate) fn role(raw: &str) -> StoreResult<Role> {
    parse("unknown role", raw, Role::parse)
}

pub(crate) fn order_status(raw: &str) -> StoreResult<OrderStatus> {
    parse("order status", raw, OrderStatus::parse)
}

pub(crate) fn partner_order_status(raw: &str) -> StoreResult<PartnerOrderStatus> {
    parse("partner order status", raw, PartnerOrderStatus::parse)
}

pub(crate) fn movement_kind(raw: &str) -> StoreResult<MovementKind> {
    parse("movement kind", raw, MovementKind::parse)
}

pub(crate) fn points_kind(raw: &str) -> StoreResult<PointsKind> {
    parse("points kind", raw, PointsKind::parse)
}

fn discount_type(raw: &str) -> StoreResult<DiscountType> {
    parse("discount type", raw, DiscountType::parse)
}

/// Columns `id, email, password_hash, role, partner_id, created_at`.
pub(crate) fn user_from_row(row: &impl Columns) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.int("id")?,
        email: row.text("email")?,
        password_hash: row.text("password_hash")?,
        role: role(&row.text("role")?)?,
        partner_id: row.opt_int("partner_id")?,
        created_at: row.ts("created_at")?,
    })
}

/// Columns `id, name, commission_rate_bps, created_at`.
pub(crate) fn partner_from_row(row: &impl Columns) -> StoreResult<PartnerRecord> {
    Ok(PartnerRecord {
        id: row.int("id")?,
        name: row.text("name")?,
        commission_rate_bps: row.int("commission_rate_bps")?,
        created_at: row.ts("created_at")?,
    })
}

/// A product with its stock account (`sql::PRODUCT_SELECT`).
pub(crate) fn product_from_row(row: &impl Columns) -> StoreResult<ProductRecord> {
    Ok(ProductRecord {
        id: row.int("id")?,
        partner_id: row.int("partner_id")?,
        name: row.text("name")?,
        price: row.int("price")?,
        release_at: row.ts("release_at")?,
        max_per_user: row.opt_int("max_per_user")?,
        on_hand: row.int("on_hand")?,
        held: row.int("held")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// One row of `stock_movements`.
pub(crate) fn movement_from_row(row: &impl Columns) -> StoreResult<MovementRecord> {
    Ok(MovementRecord {
        id: row.int("id")?,
        product_id: row.int("product_id")?,
        kind: movement_kind(&row.text("kind")?)?,
        quantity: row.int("quantity")?,
        order_id: row.opt_int("order_id")?,
        memo: row.opt_text("memo")?,
        on_hand_after: row.int("on_hand_after")?,
        held_after: row.int("held_after")?,
        created_at: row.ts("created_at")?,
    })
}

/// One row of `orders` (`sql::ORDER_COLUMNS`), without its partner orders.
pub(crate) fn order_from_row(row: &impl Columns) -> StoreResult<OrderRecord> {
    Ok(OrderRecord {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        status: order_status(&row.text("status")?)?,
        total: row.int("total")?,
        coupon_id: row.opt_int("coupon_id")?,
        discount: row.int("discount")?,
        points_used: row.int("points_used")?,
        payable: row.int("payable")?,
        pay_by: row.ts("pay_by")?,
        paid_at: row.opt_ts("paid_at")?,
        delivered_at: row.opt_ts("delivered_at")?,
        cancel_reason: row.opt_text("cancel_reason")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
        partner_orders: Vec::new(),
    })
}

/// A partner order without its items, from a row of `sql::partner_order_rows!`.
fn partner_order_from_row(row: &impl Columns) -> StoreResult<PartnerOrderRecord> {
    Ok(PartnerOrderRecord {
        id: row.int("id")?,
        order_id: row.int("order_id")?,
        partner_id: row.int("partner_id")?,
        status: partner_order_status(&row.text("status")?)?,
        subtotal: row.int("subtotal")?,
        discount: row.int("discount")?,
        points_used: row.int("points_used")?,
        payable: row.int("payable")?,
        cancel_reason: row.opt_text("cancel_reason")?,
        cancelled_at: row.opt_ts("cancelled_at")?,
        carrier: row.opt_text("carrier")?,
        tracking_number: row.opt_text("tracking_number")?,
        prepared_at: row.opt_ts("prepared_at")?,
        shipped_at: row.opt_ts("shipped_at")?,
        delivered_at: row.opt_ts("delivered_at")?,
        confirmed_at: row.opt_ts("confirmed_at")?,
        returned_at: row.opt_ts("returned_at")?,
        return_reason: row.opt_text("return_reason")?,
        items: Vec::new(),
    })
}

fn item_from_row(row: &impl Columns) -> StoreResult<OrderItemRecord> {
    Ok(OrderItemRecord {
        product_id: row.int("product_id")?,
        quantity: row.int("quantity")?,
        unit_price: row.int("unit_price")?,
        line_total: row.int("line_total")?,
    })
}

/// Partner orders with their items, in the order of the rows of `sql::partner_order_rows!`
/// (one per item), which must keep each partner order's rows together.
pub(crate) fn partner_order_list_from_rows<R: Columns>(
    rows: &[R],
) -> StoreResult<Vec<PartnerOrderRecord>> {
    let mut out: Vec<PartnerOrderRecord> = Vec::new();
    for row in rows {
        let id = row.int("id")?;
        if out.last().map(|p| p.id) != Some(id) {
            out.push(partner_order_from_row(row)?);
        }
        if let Some(current) = out.last_mut() {
            current.items.push(item_from_row(row)?);
        }
    }
    Ok(out)
}

/// Partner orders with their items, by order id, from rows of `sql::partner_order_rows!`
/// sorted by order, partner and product (both backends' statements).
pub(crate) fn partner_orders_from_rows<R: Columns>(
    rows: &[R],
) -> StoreResult<HashMap<i64, Vec<PartnerOrderRecord>>> {
    let mut out: HashMap<i64, Vec<PartnerOrderRecord>> = HashMap::new();
    for partner_order in partner_order_list_from_rows(rows)? {
        out.entry(partner_order.order_id)
            .or_default()
            .push(partner_order);
    }
    Ok(out)
}

/// One row of `sql::PARTNER_ORDER_STATES`.
pub(crate) fn partner_order_states_from_row(row: &impl Columns) -> StoreResult<PartnerOrderStates> {
    Ok(PartnerOrderStates {
        order_status: order_status(&row.text("order_status")?)?,
        status: partner_order_status(&row.text("status")?)?,
        partner_orders: row.int("partner_orders")?,
        first_id: row.int("first_id")?,
    })
}

/// One row of `outbox`.
pub(crate) fn event_from_row(row: &impl Columns) -> StoreResult<Event> {
    Ok(Event {
        id: row.int("id")?,
        aggregate_type: row.text("aggregate_type")?,
        aggregate_id: row.int("aggregate_id")?,
        event_type: row.text("event_type")?,
        payload: row.text("payload")?,
        created_at: row.ts("created_at")?,
    })
}

/// One row of `waitlist_entries`, without its position.
pub(crate) fn entry_from_row(row: &impl Columns) -> StoreResult<WaitlistEntryRecord> {
    let status = row.text("status")?;
    Ok(WaitlistEntryRecord {
        id: row.int("id")?,
        product_id: row.int("product_id")?,
        user_id: row.int("user_id")?,
        quantity: row.int("quantity")?,
        status: parse("waitlist status", &status, WaitlistStatus::parse)?,
        order_id: row.opt_int("order_id")?,
        position: None,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// An entry with its `position` column (`sql::ENTRY_WITH_POSITION`).
pub(crate) fn positioned_entry_from_row(row: &impl Columns) -> StoreResult<WaitlistEntryRecord> {
    let mut entry = entry_from_row(row)?;
    entry.position = row.opt_int("position")?;
    Ok(entry)
}

/// One row of `coupon_campaigns` (`sql::CAMPAIGN_COLUMNS`).
pub(crate) fn campaign_from_row(row: &impl Columns) -> StoreResult<CampaignRecord> {
    Ok(CampaignRecord {
        id: row.int("id")?,
        name: row.text("name")?,
        discount_type: discount_type(&row.text("discount_type")?)?,
        discount_value: row.int("discount_value")?,
        max_discount: row.opt_int("max_discount")?,
        min_order_amount: row.opt_int("min_order_amount")?,
        total_quantity: row.int("total_quantity")?,
        issued: row.int("issued")?,
        issue_starts_at: row.ts("issue_starts_at")?,
        issue_ends_at: row.opt_ts("issue_ends_at")?,
        valid_days: row.opt_int("valid_days")?,
        created_at: row.ts("created_at")?,
    })
}

/// A user coupon with its campaign's name and terms (`sql::SELECT_COUPON`).
pub(crate) fn coupon_from_row(row: &impl Columns) -> StoreResult<UserCouponRecord> {
    let status = row.text("status")?;
    Ok(UserCouponRecord {
        id: row.int("id")?,
        campaign_id: row.int("campaign_id")?,
        user_id: row.int("user_id")?,
        status: parse("coupon status", &status, CouponStatus::parse)?,
        order_id: row.opt_int("order_id")?,
        issued_at: row.ts("issued_at")?,
        expires_at: row.opt_ts("expires_at")?,
        campaign_name: row.text("name")?,
        discount_type: discount_type(&row.text("discount_type")?)?,
        discount_value: row.int("discount_value")?,
        max_discount: row.opt_int("max_discount")?,
        min_order_amount: row.opt_int("min_order_amount")?,
    })
}

/// One row of `point_ledger`.
pub(crate) fn ledger_from_row(row: &impl Columns) -> StoreResult<PointsLedgerRecord> {
    Ok(PointsLedgerRecord {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        kind: points_kind(&row.text("kind")?)?,
        amount: row.int("amount")?,
        lot_id: row.opt_int("lot_id")?,
        order_id: row.opt_int("order_id")?,
        reason: row.opt_text("reason")?,
        created_at: row.ts("created_at")?,
    })
}

/// One row of `point_operations` (`sql::OPERATION_COLUMNS`).
pub(crate) fn operation_from_row(row: &impl Columns) -> StoreResult<PointsOperationRecord> {
    let kind = row.text("kind")?;
    Ok(PointsOperationRecord {
        id: row.int("id")?,
        admin_id: row.int("admin_id")?,
        user_id: row.int("user_id")?,
        kind: parse("points operation kind", &kind, PointsOperationKind::parse)?,
        amount: row.int("amount")?,
        reason: row.text("reason")?,
        expires_at: row.opt_ts("expires_at")?,
        balance_after: row.int("balance_after")?,
        held_after: row.int("held_after")?,
        created_at: row.ts("created_at")?,
    })
}

/// A 32-bit column stored as a 64-bit integer (partitions, attempt counts).
fn small(row: &impl Columns, column: &str) -> StoreResult<i32> {
    let value = row.int(column)?;
    i32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} {value}")))
}

pub(crate) fn dead_letter_from_row(row: &impl Columns) -> StoreResult<DeadLetterRecord> {
    Ok(DeadLetterRecord {
        id: row.int("id")?,
        handler: row.text("handler")?,
        topic: row.text("topic")?,
        partition: small(row, "kafka_partition")?,
        offset: row.int("kafka_offset")?,
        key: row.opt_text("message_key")?,
        message: row.text("message")?,
        event_id: row.opt_int("event_id")?,
        error: row.text("error")?,
        attempts: small(row, "attempts")?,
        retries: small(row, "retries")?,
        status: parse(
            "dead letter status",
            &row.text("status")?,
            DeadLetterStatus::parse,
        )?,
        first_failed_at: row.ts("first_failed_at")?,
        last_failed_at: row.ts("last_failed_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// A stored `YYYY-MM-DD`.
pub(crate) fn business_date(raw: &str) -> StoreResult<BusinessDate> {
    BusinessDate::parse("business_date", raw)
        .map_err(|_| StoreError::Corrupt(format!("business date {raw:?}")))
}

/// `sql::settlement_columns!()`.
pub(crate) fn settlement_from_row(row: &impl Columns) -> StoreResult<SettlementRecord> {
    Ok(SettlementRecord {
        id: row.int("id")?,
        partner_id: row.int("partner_id")?,
        business_date: business_date(&row.text("business_date")?)?,
        gross: row.int("gross")?,
        commission: row.int("commission")?,
        net: row.int("net")?,
        line_count: row.int("line_count")?,
        created_at: row.ts("created_at")?,
    })
}

/// `sql::settlement_line_columns!()`.
pub(crate) fn settlement_line_from_row(row: &impl Columns) -> StoreResult<SettlementLineRecord> {
    let kind = row.text("kind")?;
    Ok(SettlementLineRecord {
        kind: LineKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown settlement entry kind {kind}")))?,
        partner_order_id: row.int("partner_order_id")?,
        order_id: row.int("order_id")?,
        subtotal: row.int("subtotal")?,
        commission_rate_bps: row.int("commission_rate_bps")?,
        commission: row.int("commission")?,
        net: row.int("net")?,
        confirmed_at: row.ts("confirmed_at")?,
        recorded_at: row.ts("recorded_at")?,
    })
}

/// `sql::STATEMENT_MISMATCHES`.
pub(crate) fn statement_mismatch_from_row(row: &impl Columns) -> StoreResult<StatementMismatch> {
    Ok(StatementMismatch {
        settlement_id: row.int("id")?,
        stated: (
            row.int("gross")?,
            row.int("commission")?,
            row.int("net")?,
            row.int("line_count")?,
        ),
        summed: (
            row.int("line_gross")?,
            row.int("line_commission")?,
            row.int("line_net")?,
            row.int("line_lines")?,
        ),
    })
}

/// `sql::JOB_RUNS`.
pub(crate) fn job_run_from_row(row: &impl Columns) -> StoreResult<JobRunRecord> {
    Ok(JobRunRecord {
        name: row.text("name")?,
        holder: row.text("holder")?,
        started_at: row.ts("started_at")?,
        duration_ms: row.int("duration_ms")?,
        error: row.opt_text("error")?,
    })
}

/// `sql::OPEN_CHECKOUT_OF_ORDER` and the other checkout reads.
pub(crate) fn checkout_from_row(row: &impl Columns) -> StoreResult<CheckoutRecord> {
    let status = row.text("status")?;
    Ok(CheckoutRecord {
        order_id: row.int("order_id")?,
        payment_id: row.text("payment_id")?,
        amount: row.int("amount")?,
        status: CheckoutStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("checkout status {status:?}")))?,
        created_at: row.ts("created_at")?,
        resolved_at: row.opt_ts("resolved_at")?,
    })
}
