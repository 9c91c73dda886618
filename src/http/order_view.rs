//! How an order looks on the wire: in answers, in waiting-room tickets, in live streams.

use crate::domain::fulfilment::PartnerOrderStatus;
use crate::domain::{OrderStatus, Timestamp};
use crate::store::{OrderItemRecord, OrderRecord, PartnerOrderRecord};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct OrderItemView {
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

/// One partner's part of an order, as its buyer and its sellers see it.
#[derive(Serialize, ToSchema)]
pub struct PartnerOrderView {
    pub id: i64,
    /// The buyer's order it is part of.
    pub order_id: i64,
    pub partner_id: i64,
    /// `pending_payment`, `paid`, then the seller's `preparing`, `shipped`, `delivered`,
    /// then `confirmed` with the purchase; or `cancelled`, `refunded` with the order; or
    /// `refunded` on its own once its seller took it back after confirmation (`returned_at`).
    pub status: PartnerOrderStatus,
    pub subtotal: i64,
    /// Its share of the order's coupon discount and points, allocated pro rata by subtotal
    /// at placement (the shares of all parts add up to the order's exactly).
    pub discount: i64,
    pub points_used: i64,
    /// `subtotal - discount - points_used`: what the buyer paid for this part, and what
    /// cancelling or returning it refunds.
    pub payable: i64,
    /// Who carries it and the number to track it by; `null` until it ships.
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub prepared_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub shipped_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub confirmed_at: Option<Timestamp>,
    /// When its seller took it back after the purchase was confirmed, and why; `null`
    /// unless it was returned (it then keeps `confirmed_at`).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub returned_at: Option<Timestamp>,
    pub return_reason: Option<String>,
    pub items: Vec<OrderItemView>,
}

impl From<OrderItemRecord> for OrderItemView {
    fn from(i: OrderItemRecord) -> Self {
        OrderItemView {
            product_id: i.product_id,
            quantity: i.quantity,
            unit_price: i.unit_price,
            line_total: i.line_total,
        }
    }
}

impl From<PartnerOrderRecord> for PartnerOrderView {
    fn from(p: PartnerOrderRecord) -> Self {
        PartnerOrderView {
            id: p.id,
            order_id: p.order_id,
            partner_id: p.partner_id,
            status: p.status,
            subtotal: p.subtotal,
            discount: p.discount,
            points_used: p.points_used,
            payable: p.payable,
            carrier: p.carrier,
            tracking_number: p.tracking_number,
            prepared_at: p.prepared_at,
            shipped_at: p.shipped_at,
            delivered_at: p.delivered_at,
            confirmed_at: p.confirmed_at,
            returned_at: p.returned_at,
            return_reason: p.return_reason,
            items: p.items.into_iter().map(OrderItemView::from).collect(),
        }
    }
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
    /// When the last partner order was delivered; `null` while one is left to deliver.
    /// The purchase is confirmed automatically `auto_confirm_after_secs` later.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
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
            delivered_at: o.delivered_at,
            cancel_reason: o.cancel_reason,
            created_at: o.created_at,
            updated_at: o.updated_at,
            partner_orders: o
                .partner_orders
                .into_iter()
                .map(PartnerOrderView::from)
                .collect(),
        }
    }
}
