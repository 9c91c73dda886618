//! Allocation of one placement batch: a pure function from (requests in arrival order, the
//! locked stock and limits) to a decision per request. The store loads the inputs and writes
//! the outputs inside one transaction; everything in between lives here so it can be
//! property-tested without a database.
//!
//! An order may also use one of the buyer's coupons and some of their points (DESIGN §1):
//! the batch reads those accounts under the same lock, and `allocate` holds them in
//! arrival order exactly as it holds stock, so a coupon goes to one order and points never
//! go below zero, whatever the batch holds.

use super::coupon::CouponTerms;
use super::shares::{share_benefits, Share};
use super::values::{Quantity, Timestamp, Won};
use std::collections::{HashMap, HashSet};

pub type ProductId = i64;
pub type UserId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// A validated order request. `lines` hold distinct products (the HTTP layer refuses
/// duplicates) sorted by product id.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    pub user_id: UserId,
    pub idempotency_key: String,
    /// SHA-256 of the canonical request body: the same key with another body is refused.
    pub request_hash: String,
    pub lines: Vec<Line>,
    /// A user coupon of the buyer's to take off the total.
    pub coupon_id: Option<i64>,
    /// Points (1 point = 1 won) to take off what is left; 0 for none.
    pub points: i64,
}

/// A product's catalogue facts and its stock account, read under the batch's lock.
#[derive(Debug, Clone)]
pub struct ProductState {
    pub partner_id: i64,
    pub price: Won,
    pub release_at: Timestamp,
    pub max_per_user: Option<i64>,
    pub available: i64,
}

/// An order that already exists for a `(user, idempotency key)` of the batch.
#[derive(Debug, Clone)]
pub struct ExistingOrder {
    pub order_id: i64,
    pub request_hash: String,
}

/// A user coupon named by the batch, read under the batch's lock.
#[derive(Debug, Clone)]
pub struct CouponState {
    pub user_id: UserId,
    /// `issued` and not held by an order; a held or used coupon is not.
    pub free: bool,
    pub expires_at: Option<Timestamp>,
    pub terms: CouponTerms,
}

#[derive(Debug, Default)]
pub struct BatchState {
    pub products: HashMap<ProductId, ProductState>,
    /// Units each buyer already holds or bought, for products with a purchase limit.
    pub purchased: HashMap<(UserId, ProductId), i64>,
    pub existing: HashMap<(UserId, String), ExistingOrder>,
    /// The coupons the batch names, by user coupon id.
    pub coupons: HashMap<i64, CouponState>,
    /// Points each buyer who spends points can hold: unheld and not yet expired.
    pub points: HashMap<UserId, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    UnknownProduct {
        product_id: ProductId,
    },
    NotReleased {
        product_id: ProductId,
    },
    OutOfStock {
        product_id: ProductId,
    },
    PurchaseLimit {
        product_id: ProductId,
        max_per_user: i64,
    },
    IdempotencyMismatch,
    TotalTooLarge,
    /// No such user coupon, or another buyer's.
    CouponNotFound,
    CouponExpired,
    /// Held by another open order, or used.
    CouponInUse,
    CouponMinOrderNotMet {
        min_order_amount: Won,
    },
    /// More points than the buyer can hold (unheld, unexpired).
    InsufficientPoints {
        available: i64,
    },
    /// More points than the total left after the coupon.
    PointsExceedPayable {
        payable: Won,
    },
}

impl Rejection {
    /// The stable error code of the refusal, as the API and the metrics name it.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownProduct { .. } => "not_found",
            Rejection::NotReleased { .. } => "not_released",
            Rejection::OutOfStock { .. } => "out_of_stock",
            Rejection::PurchaseLimit { .. } => "purchase_limit",
            Rejection::IdempotencyMismatch => "idempotency_mismatch",
            Rejection::TotalTooLarge => "validation_failed",
            Rejection::CouponNotFound => "coupon_not_found",
            Rejection::CouponExpired => "coupon_expired",
            Rejection::CouponInUse => "coupon_in_use",
            Rejection::CouponMinOrderNotMet { .. } => "coupon_min_order_not_met",
            Rejection::InsufficientPoints { .. } => "insufficient_points",
            Rejection::PointsExceedPayable { .. } => "points_exceed_payable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Won,
    pub line_total: Won,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPartnerOrder {
    pub partner_id: i64,
    pub subtotal: Won,
    /// Its share of the order's discount and points, and what it leaves to pay
    /// ([`super::shares::share_benefits`]).
    pub share: Share,
    pub lines: Vec<PlannedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOrder {
    pub total: Won,
    pub coupon_id: Option<i64>,
    pub discount: Won,
    pub points: Won,
    /// `total - discount - points`.
    pub payable: Won,
    /// One per partner, ascending by partner id.
    pub partner_orders: Vec<PlannedPartnerOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept(PlannedOrder),
    /// The key was used before with the same body: answer with that order.
    Replay {
        order_id: i64,
    },
    /// The key was used earlier in this same batch with the same body: answer with the
    /// outcome of request `index`.
    SameAs {
        index: usize,
    },
    Reject(Rejection),
}

#[derive(Debug)]
pub struct Allocation {
    pub decisions: Vec<Decision>,
    /// Units newly held per product, ascending by product id.
    pub holds: Vec<(ProductId, i64)>,
    /// Availability per product after the batch, for the sold-out gate.
    pub available_after: HashMap<ProductId, i64>,
}

/// The distinct products a batch names, ascending: the order their rows are locked in.
pub fn product_ids(batch: &[OrderRequest]) -> Vec<ProductId> {
    let ids: std::collections::BTreeSet<ProductId> = batch
        .iter()
        .flat_map(|r| r.lines.iter().map(|l| l.product_id))
        .collect();
    ids.into_iter().collect()
}

/// The buyers of a batch who order one of `limited`, ascending: whose past purchases the
/// store must count for the purchase limit.
pub fn buyers_of(batch: &[OrderRequest], limited: &[ProductId]) -> Vec<UserId> {
    let users: std::collections::BTreeSet<UserId> = batch
        .iter()
        .filter(|r| r.lines.iter().any(|l| limited.contains(&l.product_id)))
        .map(|r| r.user_id)
        .collect();
    users.into_iter().collect()
}

/// The distinct user coupons a batch names, ascending: the order their rows are locked in.
pub fn coupon_ids(batch: &[OrderRequest]) -> Vec<i64> {
    let ids: std::collections::BTreeSet<i64> = batch.iter().filter_map(|r| r.coupon_id).collect();
    ids.into_iter().collect()
}

/// The buyers of a batch who spend points, ascending: whose accounts the batch locks.
pub fn point_spenders(batch: &[OrderRequest]) -> Vec<UserId> {
    let users: std::collections::BTreeSet<UserId> = batch
        .iter()
        .filter(|r| r.points > 0)
        .map(|r| r.user_id)
        .collect();
    users.into_iter().collect()
}

impl BatchState {
    /// Products of the batch that have a purchase limit, ascending.
    pub fn limited_products(&self) -> Vec<ProductId> {
        let mut limited: Vec<ProductId> = self
            .products
            .iter()
            .filter(|(_, p)| p.max_per_user.is_some())
            .map(|(id, _)| *id)
            .collect();
        limited.sort_unstable();
        limited
    }
}

/// Decides each request in arrival order against the state the batch has locked.
pub fn allocate(requests: &[OrderRequest], state: &BatchState, now: Timestamp) -> Allocation {
    let mut available: HashMap<ProductId, i64> = state
        .products
        .iter()
        .map(|(id, p)| (*id, p.available))
        .collect();
    let mut purchased = state.purchased.clone();
    let mut seen_keys: HashMap<(UserId, &str), (usize, &str)> = HashMap::new();
    let mut holds: HashMap<ProductId, i64> = HashMap::new();
    let mut coupons_taken: HashSet<i64> = HashSet::new();
    let mut points = state.points.clone();
    let mut decisions = Vec::with_capacity(requests.len());

    for (index, request) in requests.iter().enumerate() {
        let key = (request.user_id, request.idempotency_key.clone());
        if let Some(existing) = state.existing.get(&key) {
            decisions.push(if existing.request_hash == request.request_hash {
                Decision::Replay {
                    order_id: existing.order_id,
                }
            } else {
                Decision::Reject(Rejection::IdempotencyMismatch)
            });
            continue;
        }
        let batch_key = (request.user_id, request.idempotency_key.as_str());
        if let Some((first, hash)) = seen_keys.get(&batch_key) {
            decisions.push(if *hash == request.request_hash {
                Decision::SameAs { index: *first }
            } else {
                Decision::Reject(Rejection::IdempotencyMismatch)
            });
            continue;
        }
        seen_keys.insert(batch_key, (index, request.request_hash.as_str()));

        let planned = plan_order(request, state, &available, &purchased, now)
            .and_then(|plan| apply_benefits(plan, request, state, (&coupons_taken, &points), now));
        let decision = match planned {
            Ok(plan) => {
                if let Some(coupon_id) = plan.coupon_id {
                    coupons_taken.insert(coupon_id);
                }
                if plan.points > Won::ZERO {
                    *points.entry(request.user_id).or_default() -= plan.points.get();
                }
                for line in &request.lines {
                    let q = line.quantity.get();
                    *available.entry(line.product_id).or_default() -= q;
                    *holds.entry(line.product_id).or_default() += q;
                    *purchased
                        .entry((request.user_id, line.product_id))
                        .or_default() += q;
                }
                Decision::Accept(plan)
            }
            Err(rejection) => Decision::Reject(rejection),
        };
        decisions.push(decision);
    }

    let mut holds: Vec<(ProductId, i64)> = holds.into_iter().collect();
    holds.sort_unstable();
    Allocation {
        decisions,
        holds,
        available_after: available,
    }
}

/// Checks one request against the running state and prices it; changes nothing.
fn plan_order(
    request: &OrderRequest,
    state: &BatchState,
    available: &HashMap<ProductId, i64>,
    purchased: &HashMap<(UserId, ProductId), i64>,
    now: Timestamp,
) -> Result<PlannedOrder, Rejection> {
    let mut by_partner: std::collections::BTreeMap<i64, PlannedPartnerOrder> = Default::default();
    let mut total = Won::ZERO;
    for line in &request.lines {
        let product_id = line.product_id;
        let product = state
            .products
            .get(&product_id)
            .ok_or(Rejection::UnknownProduct { product_id })?;
        if now < product.release_at {
            return Err(Rejection::NotReleased { product_id });
        }
        let q = line.quantity.get();
        if let Some(max_per_user) = product.max_per_user {
            let already = purchased
                .get(&(request.user_id, product_id))
                .copied()
                .unwrap_or(0);
            if already + q > max_per_user {
                return Err(Rejection::PurchaseLimit {
                    product_id,
                    max_per_user,
                });
            }
        }
        if available.get(&product_id).copied().unwrap_or(0) < q {
            return Err(Rejection::OutOfStock { product_id });
        }
        let line_total = product
            .price
            .times(line.quantity)
            .ok_or(Rejection::TotalTooLarge)?;
        total = total
            .checked_add(line_total)
            .ok_or(Rejection::TotalTooLarge)?;
        let partner = by_partner
            .entry(product.partner_id)
            .or_insert_with(|| PlannedPartnerOrder {
                partner_id: product.partner_id,
                subtotal: Won::ZERO,
                share: Share::whole(Won::ZERO),
                lines: Vec::new(),
            });
        // Cannot overflow: the subtotal is bounded by `total`, checked just above.
        partner.subtotal = partner.subtotal.checked_add(line_total).unwrap_or(total);
        partner.lines.push(PlannedLine {
            product_id,
            quantity: line.quantity,
            unit_price: product.price,
            line_total,
        });
    }
    let mut partner_orders: Vec<PlannedPartnerOrder> = by_partner.into_values().collect();
    for p in &mut partner_orders {
        p.share = Share::whole(p.subtotal);
    }
    Ok(PlannedOrder {
        total,
        coupon_id: None,
        discount: Won::ZERO,
        points: Won::ZERO,
        payable: total,
        partner_orders,
    })
}

/// Takes the request's coupon, then its points, off a priced order; changes nothing.
/// `coupons_taken` and `points` are what earlier orders of the batch left.
fn apply_benefits(
    mut plan: PlannedOrder,
    request: &OrderRequest,
    state: &BatchState,
    (coupons_taken, points): (&HashSet<i64>, &HashMap<UserId, i64>),
    now: Timestamp,
) -> Result<PlannedOrder, Rejection> {
    if let Some(coupon_id) = request.coupon_id {
        let coupon = state
            .coupons
            .get(&coupon_id)
            .filter(|c| c.user_id == request.user_id)
            .ok_or(Rejection::CouponNotFound)?;
        if !coupon.free || coupons_taken.contains(&coupon_id) {
            return Err(Rejection::CouponInUse);
        }
        if coupon.expires_at.is_some_and(|at| at <= now) {
            return Err(Rejection::CouponExpired);
        }
        plan.discount = coupon
            .terms
            .discount_for(plan.total)
            .map_err(|min_order_amount| Rejection::CouponMinOrderNotMet { min_order_amount })?;
        plan.coupon_id = Some(coupon_id);
    }
    // discount <= total (`Discount::amount_off`), so this cannot fail.
    let after_coupon = plan.total.checked_sub(plan.discount).unwrap_or(Won::ZERO);
    if request.points > 0 {
        if request.points > after_coupon.get() {
            return Err(Rejection::PointsExceedPayable {
                payable: after_coupon,
            });
        }
        let available = points.get(&request.user_id).copied().unwrap_or(0);
        if request.points > available {
            return Err(Rejection::InsufficientPoints { available });
        }
        plan.points = Won::new("points", request.points).map_err(|_| Rejection::TotalTooLarge)?;
    }
    plan.payable = after_coupon.checked_sub(plan.points).unwrap_or(Won::ZERO);
    let subtotals: Vec<Won> = plan.partner_orders.iter().map(|p| p.subtotal).collect();
    let shares = share_benefits(&subtotals, plan.discount, plan.points);
    for (part, share) in plan.partner_orders.iter_mut().zip(shares) {
        part.share = share;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn product(partner_id: i64, price: i64, available: i64, max: Option<i64>) -> ProductState {
        ProductState {
            partner_id,
            price: Won::new("price", price).unwrap(),
            release_at: Timestamp::from_millis(0),
            max_per_user: max,
            available,
        }
    }

    fn request(user_id: i64, key: &str, lines: &[(i64, i64)]) -> OrderRequest {
        OrderRequest {
            user_id,
            idempotency_key: key.to_owned(),
            request_hash: format!("{lines:?}"),
            lines: lines
                .iter()
                .map(|(p, q)| Line {
                    product_id: *p,
                    quantity: Quantity::new("quantity", *q).unwrap(),
                })
                .collect(),
            coupon_id: None,
            points: 0,
        }
    }

    const NOW: Timestamp = Timestamp::from_millis(1);

    #[test]
    fn splits_an_order_per_partner() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 1000, 5, None));
        state.products.insert(2, product(20, 500, 5, None));
        state.products.insert(3, product(10, 100, 5, None));
        let a = allocate(&[request(1, "k", &[(1, 2), (2, 1), (3, 1)])], &state, NOW);
        let Decision::Accept(plan) = &a.decisions[0] else {
            panic!("expected accept, got {:?}", a.decisions[0]);
        };
        assert_eq!(plan.total.get(), 2600);
        let subtotals: Vec<_> = plan
            .partner_orders
            .iter()
            .map(|p| (p.partner_id, p.subtotal.get()))
            .collect();
        assert_eq!(subtotals, vec![(10, 2100), (20, 500)]);
        assert_eq!(a.holds, vec![(1, 2), (2, 1), (3, 1)]);
    }

    #[test]
    fn an_order_is_all_or_nothing() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 1000, 5, None));
        state.products.insert(2, product(10, 1000, 0, None));
        let a = allocate(&[request(1, "k", &[(1, 1), (2, 1)])], &state, NOW);
        assert_eq!(
            a.decisions[0],
            Decision::Reject(Rejection::OutOfStock { product_id: 2 })
        );
        assert!(a.holds.is_empty());
        assert_eq!(a.available_after[&1], 5);
    }

    #[test]
    fn unreleased_products_are_refused() {
        let mut state = BatchState::default();
        let mut p = product(10, 1000, 5, None);
        p.release_at = Timestamp::from_millis(10);
        state.products.insert(1, p);
        let a = allocate(&[request(1, "k", &[(1, 1)])], &state, NOW);
        assert_eq!(
            a.decisions[0],
            Decision::Reject(Rejection::NotReleased { product_id: 1 })
        );
    }

    #[test]
    fn repeated_keys_in_one_batch_replay_or_mismatch() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 1000, 5, None));
        let same = request(1, "k", &[(1, 1)]);
        let other_body = request(1, "k", &[(1, 2)]);
        let other_user = request(2, "k", &[(1, 1)]);
        let a = allocate(&[same.clone(), same, other_body, other_user], &state, NOW);
        assert!(matches!(a.decisions[0], Decision::Accept(_)));
        assert_eq!(a.decisions[1], Decision::SameAs { index: 0 });
        assert_eq!(
            a.decisions[2],
            Decision::Reject(Rejection::IdempotencyMismatch)
        );
        assert!(matches!(a.decisions[3], Decision::Accept(_)));
        assert_eq!(a.holds, vec![(1, 2)]);
    }

    #[test]
    fn keys_already_stored_replay_or_mismatch() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 1000, 5, None));
        let r = request(1, "k", &[(1, 1)]);
        state.existing.insert(
            (1, "k".into()),
            ExistingOrder {
                order_id: 77,
                request_hash: r.request_hash.clone(),
            },
        );
        let mismatch = request(1, "k", &[(1, 3)]);
        let a = allocate(&[r, mismatch], &state, NOW);
        assert_eq!(a.decisions[0], Decision::Replay { order_id: 77 });
        assert_eq!(
            a.decisions[1],
            Decision::Reject(Rejection::IdempotencyMismatch)
        );
        assert!(a.holds.is_empty());
    }

    fn coupon(user_id: i64, percent: i64, min: Option<i64>) -> CouponState {
        use crate::domain::coupon::{Discount, DiscountType};
        CouponState {
            user_id,
            free: true,
            expires_at: None,
            terms: CouponTerms {
                discount: Discount::new(DiscountType::Percent, percent, Some(3_000)).unwrap(),
                min_order_amount: min.map(|m| Won::new("min", m).unwrap()),
            },
        }
    }

    fn with_benefits(mut r: OrderRequest, coupon_id: Option<i64>, points: i64) -> OrderRequest {
        r.coupon_id = coupon_id;
        r.points = points;
        r
    }

    #[test]
    fn coupon_then_points_come_off_the_total() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 9_999, 5, None));
        state.coupons.insert(7, coupon(1, 15, Some(9_999)));
        state.points.insert(1, 500);
        let a = allocate(
            &[with_benefits(request(1, "k", &[(1, 1)]), Some(7), 500)],
            &state,
            NOW,
        );
        let Decision::Accept(plan) = &a.decisions[0] else {
            panic!("expected accept, got {:?}", a.decisions[0]);
        };
        // floor(9,999 × 15%) = 1,499 (1,499.85 rounds down), under the 3,000 cap.
        assert_eq!(plan.discount.get(), 1_499);
        assert_eq!(plan.points.get(), 500);
        assert_eq!(plan.payable.get(), 9_999 - 1_499 - 500);
        assert_eq!(plan.coupon_id, Some(7));
    }

    #[test]
    fn a_coupon_goes_to_one_order_and_only_its_owner() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 1_000, 5, None));
        state.coupons.insert(7, coupon(1, 10, None));
        let mut used = coupon(1, 10, None);
        used.free = false;
        state.coupons.insert(8, used);
        let mut expired = coupon(1, 10, None);
        expired.expires_at = Some(NOW);
        state.coupons.insert(9, expired);
        state.coupons.insert(10, coupon(1, 10, Some(1_001)));
        let batch = [
            with_benefits(request(1, "a", &[(1, 1)]), Some(7), 0),
            with_benefits(request(1, "b", &[(1, 1)]), Some(7), 0),
            with_benefits(request(2, "c", &[(1, 1)]), Some(7), 0),
            with_benefits(request(1, "d", &[(1, 1)]), Some(99), 0),
            with_benefits(request(1, "e", &[(1, 1)]), Some(8), 0),
            with_benefits(request(1, "f", &[(1, 1)]), Some(9), 0),
            with_benefits(request(1, "g", &[(1, 1)]), Some(10), 0),
        ];
        let a = allocate(&batch, &state, NOW);
        assert!(matches!(a.decisions[0], Decision::Accept(_)));
        let rejected: Vec<_> = a.decisions[1..].to_vec();
        let min_order_amount = Won::new("min", 1_001).unwrap();
        assert_eq!(
            rejected,
            vec![
                Decision::Reject(Rejection::CouponInUse),
                Decision::Reject(Rejection::CouponNotFound),
                Decision::Reject(Rejection::CouponNotFound),
                Decision::Reject(Rejection::CouponInUse),
                Decision::Reject(Rejection::CouponExpired),
                Decision::Reject(Rejection::CouponMinOrderNotMet { min_order_amount }),
            ]
        );
        // Refused orders hold no stock.
        assert_eq!(a.holds, vec![(1, 1)]);
    }

    #[test]
    fn points_are_held_in_arrival_order_until_they_run_out() {
        let mut state = BatchState::default();
        state.products.insert(1, product(10, 1_000, 100, None));
        state.points.insert(1, 250);
        let batch: Vec<OrderRequest> = (0..4)
            .map(|i| with_benefits(request(1, &format!("k{i}"), &[(1, 1)]), None, 100))
            .collect();
        let mut too_many = with_benefits(request(1, "x", &[(1, 1)]), None, 1_001);
        too_many.idempotency_key = "x".into();
        let mut batch = batch;
        batch.push(too_many);
        batch.push(with_benefits(request(2, "y", &[(1, 1)]), None, 1));
        let a = allocate(&batch, &state, NOW);
        let accepted = a
            .decisions
            .iter()
            .filter(|d| matches!(d, Decision::Accept(_)))
            .count();
        assert_eq!(accepted, 2);
        assert_eq!(
            a.decisions[2],
            Decision::Reject(Rejection::InsufficientPoints { available: 50 })
        );
        assert_eq!(
            a.decisions[4],
            Decision::Reject(Rejection::PointsExceedPayable {
                payable: Won::new("p", 1_000).unwrap()
            })
        );
        assert_eq!(
            a.decisions[5],
            Decision::Reject(Rejection::InsufficientPoints { available: 0 })
        );
    }

    proptest! {
        /// Points never go below zero, a coupon goes to one order of its owner, and
        /// every accepted order's payable is its total less its discount and points.
        #[test]
        fn points_and_coupons_are_never_overspent(
            balances in proptest::collection::vec(0i64..500, 3),
            requests in proptest::collection::vec(
                (0i64..3, proptest::option::of(0i64..4), 0i64..300, 1i64..4), 0..40),
        ) {
            let mut state = BatchState::default();
            state.products.insert(1, product(1, 250, 1_000, None));
            for (user, balance) in balances.iter().enumerate() {
                state.points.insert(user as i64, *balance);
            }
            for id in 0..4 {
                state.coupons.insert(id, coupon(id % 3, 20, None));
            }
            let batch: Vec<OrderRequest> = requests
                .iter()
                .enumerate()
                .map(|(i, (user, coupon_id, points, q))| {
                    with_benefits(request(*user, &format!("k{i}"), &[(1, *q)]), *coupon_id, *points)
                })
                .collect();
            let a = allocate(&batch, &state, NOW);
            let mut spent: HashMap<i64, i64> = HashMap::new();
            let mut coupons_used = HashSet::new();
            for (request, decision) in batch.iter().zip(&a.decisions) {
                if let Decision::Accept(plan) = decision {
                    *spent.entry(request.user_id).or_default() += plan.points.get();
                    prop_assert_eq!(plan.points.get(), request.points);
                    prop_assert_eq!(
                        plan.payable.get(),
                        plan.total.get() - plan.discount.get() - plan.points.get()
                    );
                    if let Some(id) = plan.coupon_id {
                        prop_assert!(coupons_used.insert(id), "coupon {} used twice", id);
                        prop_assert_eq!(state.coupons[&id].user_id, request.user_id);
                    }
                }
            }
            for (user, total) in spent {
                prop_assert!(total <= state.points[&user], "user {} overspent", user);
            }
        }

        /// Whatever arrives, nothing is oversold, nobody exceeds their limit, holds equal
        /// the accepted lines, and stock is only refused when it really ran out.
        #[test]
        fn never_oversells_nor_exceeds_limits(
            stock in proptest::collection::vec(0i64..20, 1..4),
            limits in proptest::collection::vec(proptest::option::of(1i64..4), 4),
            purchased in proptest::collection::vec(0i64..3, 4),
            requests in proptest::collection::vec(
                (0i64..5, proptest::collection::btree_map(0i64..4, 1i64..4, 1..3)), 0..60),
        ) {
            let mut state = BatchState::default();
            for (i, s) in stock.iter().enumerate() {
                state.products.insert(i as i64, product(i as i64 % 2, 100, *s, limits[i]));
            }
            for user in 0..5 {
                for (p, bought) in purchased.iter().enumerate() {
                    state.purchased.insert((user, p as i64), *bought);
                }
            }
            let requests: Vec<OrderRequest> = requests
                .iter()
                .enumerate()
                .map(|(i, (user, lines))| {
                    let lines: Vec<(i64, i64)> = lines.iter().map(|(p, q)| (*p, *q)).collect();
                    request(*user, &format!("k{i}"), &lines)
                })
                .collect();
            let a = allocate(&requests, &state, NOW);
            prop_assert_eq!(a.decisions.len(), requests.len());

            let mut held: HashMap<i64, i64> = HashMap::new();
            let mut bought = state.purchased.clone();
            for (request, decision) in requests.iter().zip(&a.decisions) {
                match decision {
                    Decision::Accept(plan) => {
                        let lines: i64 = plan.partner_orders.iter().map(|p| p.subtotal.get()).sum();
                        prop_assert_eq!(lines, plan.total.get());
                        for line in &request.lines {
                            *held.entry(line.product_id).or_default() += line.quantity.get();
                            *bought.entry((request.user_id, line.product_id)).or_default() += line.quantity.get();
                        }
                    }
                    Decision::Reject(Rejection::OutOfStock { product_id }) => {
                        let line = request.lines.iter().find(|l| l.product_id == *product_id).unwrap();
                        let left = state.products[product_id].available - held.get(product_id).copied().unwrap_or(0);
                        prop_assert!(left < line.quantity.get());
                    }
                    _ => {}
                }
            }
            for (product_id, p) in &state.products {
                let h = held.get(product_id).copied().unwrap_or(0);
                prop_assert!(h <= p.available, "oversold product {}", product_id);
                prop_assert_eq!(a.available_after[product_id], p.available - h);
            }
            for ((user, product_id), qty) in &bought {
                if let Some(max) = state.products.get(product_id).and_then(|p| p.max_per_user) {
                    let before = state.purchased.get(&(*user, *product_id)).copied().unwrap_or(0);
                    prop_assert!(*qty <= max.max(before), "user {} above limit on {}", user, product_id);
                }
            }
            let mut expected: Vec<(i64, i64)> = held.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(a.holds, expected);
        }
    }
}
