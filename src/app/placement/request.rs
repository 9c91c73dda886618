//! An order as the buyer asks for it, read into the [`OrderRequest`] placement decides: lines
//! sorted and distinct, the coupon and points checked for range, and a hash of that
//! canonical form, so the same items in another order count as the same request.

use crate::domain::allocation::{Line, OrderRequest};
use crate::domain::{DomainError, IdempotencyKey, Quantity, Won};
use sha2::{Digest, Sha256};

pub const MAX_ORDER_ITEMS: usize = 50;

/// What the buyer sent.
pub struct OrderInput {
    /// `(product_id, quantity)` per item, in any order.
    pub items: Vec<(i64, i64)>,
    pub coupon_id: Option<i64>,
    pub points: Option<i64>,
}

/// The buyer's request, ready for placement.
pub fn order_request(
    user_id: i64,
    key: &IdempotencyKey,
    input: &OrderInput,
) -> Result<OrderRequest, DomainError> {
    if input.items.is_empty() || input.items.len() > MAX_ORDER_ITEMS {
        return Err(DomainError::new(
            "items",
            format!("must hold 1 to {MAX_ORDER_ITEMS} items"),
        ));
    }
    let mut lines = Vec::with_capacity(input.items.len());
    for &(product_id, quantity) in &input.items {
        if product_id <= 0 {
            return Err(DomainError::new("product_id", "must be a positive id"));
        }
        lines.push(Line {
            product_id,
            quantity: Quantity::new("quantity", quantity)?,
        });
    }
    lines.sort_by_key(|l| l.product_id);
    if lines.windows(2).any(|w| w[0].product_id == w[1].product_id) {
        return Err(DomainError::new("items", "each product may appear once"));
    }
    if input.coupon_id.is_some_and(|id| id <= 0) {
        return Err(DomainError::new("coupon_id", "must be a positive id"));
    }
    let points = Won::new("points", input.points.unwrap_or(0))?.get();
    let mut canonical: Vec<String> = lines
        .iter()
        .map(|l| format!("{}x{}", l.product_id, l.quantity.get()))
        .collect();
    // Appended only when present, so orders without them keep their earlier hashes.
    if let Some(coupon_id) = input.coupon_id {
        canonical.push(format!("c{coupon_id}"));
    }
    if points > 0 {
        canonical.push(format!("p{points}"));
    }
    let digest = Sha256::digest(canonical.join(",").as_bytes());
    Ok(OrderRequest {
        user_id,
        idempotency_key: key.as_str().to_owned(),
        request_hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
        lines,
        coupon_id: input.coupon_id,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IdempotencyKey {
        IdempotencyKey::parse("k-1").unwrap()
    }

    fn input(items: Vec<(i64, i64)>) -> OrderInput {
        OrderInput {
            items,
            coupon_id: None,
            points: None,
        }
    }

    #[test]
    fn the_same_items_in_another_order_are_the_same_request() {
        let a = order_request(1, &key(), &input(vec![(2, 1), (1, 3)])).unwrap();
        let b = order_request(1, &key(), &input(vec![(1, 3), (2, 1)])).unwrap();
        assert_eq!(a.request_hash, b.request_hash);
        assert_eq!(a.lines[0].product_id, 1);
        let c = order_request(1, &key(), &input(vec![(1, 3), (2, 2)])).unwrap();
        assert_ne!(a.request_hash, c.request_hash);
    }

    #[test]
    fn bad_orders_are_refused() {
        assert!(order_request(1, &key(), &input(vec![])).is_err());
        assert!(order_request(1, &key(), &input(vec![(1, 1), (1, 2)])).is_err());
        assert!(order_request(1, &key(), &input(vec![(0, 1)])).is_err());
        assert!(order_request(1, &key(), &input(vec![(1, 0)])).is_err());
        let too_many = (1..=51).map(|p| (p, 1)).collect();
        assert!(order_request(1, &key(), &input(too_many)).is_err());
        let negative_points = OrderInput {
            points: Some(-1),
            ..input(vec![(1, 1)])
        };
        assert!(order_request(1, &key(), &negative_points).is_err());
    }
}
