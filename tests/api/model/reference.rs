//! The reference model: what the books should say, as plain structs and arithmetic, written
//! from the README's rules rather than from the code under test. Every transition here is
//! one the server is asked to make; the judge (`judge.rs`) decides from the server's answer
//! which one happened, and the checks (`checks.rs`) compare the result with the server.
//!
//! Stock is `on_hand` and `held` per product (available = on_hand − held), with the sum of
//! each kind of movement, so the ledger can be compared too. Points live in lots: every
//! lot here expires `points_valid_days` after it was made, so "soonest-expiring first" is
//! creation order, which is the order of `Buyer::lots`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    PendingPayment,
    Paid,
    Preparing,
    Shipped,
    Delivered,
    Confirmed,
    Cancelled,
    Refunded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingPayment => "pending_payment",
            Status::Paid => "paid",
            Status::Preparing => "preparing",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
            Status::Refunded => "refunded",
        }
    }
}

/// Sums of a product's stock movements, by kind (`adjust` signed, the others positive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    pub inbound: i64,
    pub adjust: i64,
    pub hold: i64,
    pub release: i64,
    pub commit: i64,
    pub returned: i64,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: i64,
    pub partner: usize,
    pub price: i64,
    pub max_per_user: Option<i64>,
    pub on_hand: i64,
    pub held: i64,
    pub moved: Moved,
}

impl Product {
    pub fn available(&self) -> i64 {
        self.on_hand - self.held
    }

    /// Units sold and not given back.
    pub fn sold(&self) -> i64 {
        self.moved.commit - self.moved.returned
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Discount {
    Fixed(i64),
    Percent { percent: i64, max: Option<i64> },
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: i64,
    pub discount: Discount,
    pub min_order: Option<i64>,
    pub total: i64,
    pub issued: i64,
}

impl Campaign {
    /// Won off an order of `total`, or `None` below the minimum order.
    pub fn discount_on(&self, total: i64) -> Option<i64> {
        if self.min_order.is_some_and(|min| total < min) {
            return None;
        }
        let off = match self.discount {
            Discount::Fixed(value) => value,
            Discount::Percent { percent, max } => {
                let off = total * percent / 100;
                max.map_or(off, |max| off.min(max))
            }
        };
        Some(off.min(total))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponState {
    Issued,
    Held(i64),
    Used(i64),
}

impl CouponState {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponState::Issued => "issued",
            CouponState::Held(_) => "held",
            CouponState::Used(_) => "used",
        }
    }

    pub fn order(self) -> Option<i64> {
        match self {
            CouponState::Issued => None,
            CouponState::Held(order) | CouponState::Used(order) => Some(order),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Coupon {
    pub id: i64,
    pub campaign: usize,
    pub state: CouponState,
}

#[derive(Debug, Clone)]
pub struct Lot {
    pub amount: i64,
    pub remaining: i64,
    pub held: i64,
}

#[derive(Debug, Clone)]
pub struct Buyer {
    pub id: i64,
    pub coupons: Vec<Coupon>,
    pub lots: Vec<Lot>,
}

impl Buyer {
    pub fn balance(&self) -> i64 {
        self.lots.iter().map(|l| l.remaining).sum()
    }

    pub fn held(&self) -> i64 {
        self.lots.iter().map(|l| l.held).sum()
    }

    pub fn spendable(&self) -> i64 {
        self.balance() - self.held()
    }

    pub fn coupon(&self, id: i64) -> Option<&Coupon> {
        self.coupons.iter().find(|c| c.id == id)
    }

    fn set_coupon(&mut self, id: i64, state: CouponState) {
        if let Some(coupon) = self.coupons.iter_mut().find(|c| c.id == id) {
            coupon.state = state;
        }
    }

    /// Holds `amount` points on the lots in use order; `(lot, taken)` in the order taken.
    fn hold_points(&mut self, amount: i64) -> Vec<(usize, i64)> {
        let mut left = amount;
        let mut taken = Vec::new();
        for (i, lot) in self.lots.iter_mut().enumerate() {
            let take = (lot.remaining - lot.held).min(left);
            if take > 0 {
                lot.held += take;
                left -= take;
                taken.push((i, take));
            }
        }
        assert_eq!(left, 0, "the model held more points than the buyer has");
        taken
    }
}

#[derive(Debug, Clone)]
pub struct Part {
    pub id: i64,
    pub partner: usize,
    /// `(product index, quantity)`, ascending by product.
    pub lines: Vec<(usize, i64)>,
    pub subtotal: i64,
    pub discount: i64,
    pub points: i64,
    pub payable: i64,
    pub status: Status,
    /// The model's tick when it was delivered; 0 before.
    pub delivered: u64,
}

/// The lot a confirmed purchase earned, and the payable of the parts it was earned on.
#[derive(Debug, Clone)]
pub struct Earned {
    pub lot: usize,
    pub amount: i64,
    pub on: i64,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: i64,
    pub buyer: usize,
    /// The Idempotency-Key and body it was placed with, for replays.
    pub request: super::ops::Request,
    pub status: Status,
    pub coupon: Option<i64>,
    pub total: i64,
    pub discount: i64,
    pub points: i64,
    pub payable: i64,
    pub parts: Vec<Part>,
    /// What its points took per lot, net of what was given back, in the order taken.
    pub points_taken: Vec<(usize, i64)>,
    /// Its payment deadline passed and no sweep has run since.
    pub overdue: bool,
    pub earned: Option<Earned>,
}

impl Order {
    pub fn shipped(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p.status, Status::Shipped | Status::Delivered))
    }

    /// Paid, and nothing left to deliver: the buyer (or the sweeper) may confirm it.
    pub fn confirmable(&self) -> bool {
        self.status == Status::Paid
            && self
                .parts
                .iter()
                .all(|p| matches!(p.status, Status::Delivered | Status::Cancelled))
    }
}

/// A priced order before it is placed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub total: i64,
    pub discount: i64,
    pub points: i64,
    pub payable: i64,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub struct Model {
    /// Partner ids, by partner index.
    pub partners: Vec<i64>,
    pub products: Vec<Product>,
    pub campaigns: Vec<Campaign>,
    pub buyers: Vec<Buyer>,
    pub orders: BTreeMap<i64, Order>,
    pub earn_rate_bps: i64,
    /// Counts the operations applied, so deliveries can be ordered.
    pub tick: u64,
}

impl Model {
    /// Units of `product` the buyer holds or bought, as the purchase limit counts them.
    pub fn purchased(&self, buyer: usize, product: usize) -> i64 {
        self.orders
            .values()
            .filter(|o| o.buyer == buyer)
            .filter(|o| {
                matches!(
                    o.status,
                    Status::PendingPayment | Status::Paid | Status::Confirmed
                )
            })
            .flat_map(|o| o.parts.iter())
            .filter(|p| !matches!(p.status, Status::Cancelled | Status::Refunded))
            .flat_map(|p| p.lines.iter())
            .filter(|(p, _)| *p == product)
            .map(|(_, q)| q)
            .sum()
    }

    /// Prices `lines` (ascending by product), one part per partner, and shares `discount`
    /// and `points` among the parts.
    pub fn plan(&self, lines: &[(usize, i64)], discount: i64, points: i64) -> Plan {
        let mut parts: BTreeMap<usize, Part> = BTreeMap::new();
        for &(product, quantity) in lines {
            let p = &self.products[product];
            let part = parts.entry(p.partner).or_insert_with(|| Part {
                id: 0,
                partner: p.partner,
                lines: Vec::new(),
                subtotal: 0,
                discount: 0,
                points: 0,
                payable: 0,
                status: Status::PendingPayment,
                delivered: 0,
            });
            part.lines.push((product, quantity));
            part.subtotal += p.price * quantity;
        }
        let mut parts: Vec<Part> = parts.into_values().collect();
        let subtotals: Vec<i64> = parts.iter().map(|p| p.subtotal).collect();
        let discounts = largest_remainder(discount, &subtotals);
        let rests: Vec<i64> = subtotals
            .iter()
            .zip(&discounts)
            .map(|(s, d)| s - d)
            .collect();
        let points_shares = largest_remainder(points, &rests);
        for (i, part) in parts.iter_mut().enumerate() {
            part.discount = discounts[i];
            part.points = points_shares[i];
            part.payable = rests[i] - points_shares[i];
        }
        let total: i64 = subtotals.iter().sum();
        Plan {
            total,
            discount,
            points,
            payable: total - discount - points,
            parts,
        }
    }

    /// A placed order: its stock, coupon and points held.
    pub fn place(&mut self, mut order: Order) {
        for part in &order.parts {
            for &(product, quantity) in &part.lines {
                let p = &mut self.products[product];
                p.held += quantity;
                p.moved.hold += quantity;
            }
        }
        let buyer = &mut self.buyers[order.buyer];
        if let Some(coupon) = order.coupon {
            buyer.set_coupon(coupon, CouponState::Held(order.id));
        }
        if order.points > 0 {
            order.points_taken = buyer.hold_points(order.points);
        }
        self.orders.insert(order.id, order);
    }

    pub fn pay(&mut self, id: i64) {
        let order = self.orders.get_mut(&id).expect("order in the model");
        order.status = Status::Paid;
        let buyer = &mut self.buyers[order.buyer];
        for part in &mut order.parts {
            part.status = Status::Paid;
            for &(product, quantity) in &part.lines {
                let p = &mut self.products[product];
                p.on_hand -= quantity;
                p.held -= quantity;
                p.moved.commit += quantity;
            }
        }
        if let Some(coupon) = order.coupon {
            buyer.set_coupon(coupon, CouponState::Used(id));
        }
        for &(lot, taken) in &order.points_taken {
            buyer.lots[lot].held -= taken;
            buyer.lots[lot].remaining -= taken;
        }
    }

    /// A pending order cancelled by its buyer or expired by the sweeper.
    pub fn release(&mut self, id: i64) {
        let order = self.orders.get_mut(&id).expect("order in the model");
        order.status = Status::Cancelled;
        let buyer = &mut self.buyers[order.buyer];
        for part in &mut order.parts {
            part.status = Status::Cancelled;
            for &(product, quantity) in &part.lines {
                let p = &mut self.products[product];
                p.held -= quantity;
                p.moved.release += quantity;
            }
        }
        if let Some(coupon) = order.coupon {
            buyer.set_coupon(coupon, CouponState::Issued);
        }
        for (lot, taken) in order.points_taken.drain(..) {
            buyer.lots[lot].held -= taken;
        }
    }

    /// A paid order given back whole: the units of its live parts return, the coupon is
    /// issued again, the points it still has spent come back.
    pub fn refund(&mut self, id: i64) {
        let order = self.orders.get_mut(&id).expect("order in the model");
        order.status = Status::Refunded;
        for part in order
            .parts
            .iter_mut()
            .filter(|p| p.status != Status::Cancelled)
        {
            part.status = Status::Refunded;
            for &(product, quantity) in &part.lines {
                let p = &mut self.products[product];
                p.on_hand += quantity;
                p.moved.returned += quantity;
            }
        }
        let buyer = &mut self.buyers[order.buyer];
        if let Some(coupon) = order.coupon {
            buyer.set_coupon(coupon, CouponState::Issued);
        }
        for (lot, taken) in order.points_taken.drain(..) {
            buyer.lots[lot].remaining += taken;
        }
    }

    /// A seller cancels one part of a paid order before it ships; the order is refunded
    /// when it was the last live part.
    pub fn cancel_part(&mut self, id: i64, part: usize) {
        let order = self.orders.get_mut(&id).expect("order in the model");
        let share = order.parts[part].points;
        order.parts[part].status = Status::Cancelled;
        for &(product, quantity) in &order.parts[part].lines {
            let p = &mut self.products[product];
            p.on_hand += quantity;
            p.moved.returned += quantity;
        }
        refund_points(&mut self.buyers[order.buyer], order, share);
        if order.parts.iter().all(|p| p.status == Status::Cancelled) {
            self.refund(id);
        }
    }

    /// The buyer's confirmation (or the sweeper's): every live part is confirmed; returns
    /// the points it earns, which the earning job credits later ([`Model::earn`]).
    pub fn confirm(&mut self, id: i64) -> i64 {
        let order = self.orders.get_mut(&id).expect("order in the model");
        order.status = Status::Confirmed;
        let mut on = 0;
        for part in order
            .parts
            .iter_mut()
            .filter(|p| p.status != Status::Cancelled)
        {
            part.status = Status::Confirmed;
            on += part.payable;
        }
        let amount = on * self.earn_rate_bps / 10_000;
        if amount > 0 {
            order.earned = Some(Earned {
                lot: usize::MAX,
                amount,
                on,
            });
        }
        amount
    }

    /// The earning job credits a confirmed order's points as a new lot.
    pub fn earn(&mut self, id: i64) {
        let order = self.orders.get_mut(&id).expect("order in the model");
        if let Some(earned) = order.earned.as_mut() {
            let lots = &mut self.buyers[order.buyer].lots;
            earned.lot = lots.len();
            lots.push(Lot {
                amount: earned.amount,
                remaining: earned.amount,
                held: 0,
            });
        }
    }

    /// A seller takes back a confirmed part: its points share is refunded, and the points
    /// its purchase earned are taken back in proportion while the earned lot has them
    /// unheld. No stock moves.
    pub fn return_part(&mut self, id: i64, part: usize) {
        let order = self.orders.get_mut(&id).expect("order in the model");
        order.parts[part].status = Status::Refunded;
        let (share, payable) = (order.parts[part].points, order.parts[part].payable);
        let buyer = &mut self.buyers[order.buyer];
        refund_points(buyer, order, share);
        if let Some(earned) = &order.earned {
            let lot = &mut buyer.lots[earned.lot];
            let due = if payable > 0 && earned.on > 0 {
                earned.amount * payable.min(earned.on) / earned.on
            } else {
                0
            };
            lot.remaining -= due.min(lot.remaining - lot.held).max(0);
        }
    }

    pub fn grant(&mut self, buyer: usize, amount: i64) {
        self.buyers[buyer].lots.push(Lot {
            amount,
            remaining: amount,
            held: 0,
        });
    }
}

/// Gives `share` spent points of `order` back to the lots they came from, in the order
/// they were taken.
fn refund_points(buyer: &mut Buyer, order: &mut Order, share: i64) {
    let mut left = share;
    for (lot, net) in order.points_taken.iter_mut() {
        let take = (*net).min(left);
        *net -= take;
        left -= take;
        buyer.lots[*lot].remaining += take;
    }
    order.points_taken.retain(|(_, net)| *net > 0);
    assert_eq!(
        left, 0,
        "the model refunds more points than order {} spent",
        order.id
    );
}

/// `amount` split over `weights` pro rata: each share the floor of its quota, the won left
/// over one each to the largest remainders, ties to the earlier weight.
fn largest_remainder(amount: i64, weights: &[i64]) -> Vec<i64> {
    let whole: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    if amount == 0 || whole == 0 {
        return vec![0; weights.len()];
    }
    let quotas: Vec<(i128, i128)> = weights
        .iter()
        .map(|w| {
            let exact = i128::from(amount) * i128::from(*w);
            (exact / whole, exact % whole)
        })
        .collect();
    let mut shares: Vec<i64> = quotas.iter().map(|(q, _)| *q as i64).collect();
    let mut left = amount - shares.iter().sum::<i64>();
    let mut by_remainder: Vec<usize> = (0..weights.len()).collect();
    by_remainder.sort_by(|a, b| quotas[*b].1.cmp(&quotas[*a].1).then(a.cmp(b)));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}
