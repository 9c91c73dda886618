//! How an order looks on the wire: in answers, in waiting-room tickets, in live streams.

use crate::domain::{OrderStatus, Timestamp};
use crate::store::OrderRecord;
use serde::Serialize;
use utoipa::ToSchema;

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
