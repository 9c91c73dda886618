//! The judge: given an operation and the server's answer, decides whether the model allows
//! that answer and, if so, applies it to the model.
//!
//! Each buyer's own state (orders, coupons, points) is touched by one operation per round,
//! so it decides exactly. What buyers share — a product's stock, a campaign's count — is
//! judged against the [`Bounds`] of the round (`round.rs`).

use super::ops::{Op, Outcome, PartRef, Request, Step};
use super::reference::{Coupon, CouponState, Model, Order, Plan, Status};
use super::round::{Bounds, Touched};
use crate::helpers::Reply;
use serde_json::Value;

pub type Judgement = Result<(), String>;

fn code(reply: &Reply) -> Option<&str> {
    reply.1["error"]["code"].as_str()
}

/// The answer has `status` and, for an error, the documented body with `code`.
fn answered(reply: &Reply, status: u16, code: Option<&str>) -> Judgement {
    let (got, body) = (reply.0.as_u16(), &reply.1);
    let code_ok = code.is_none_or(|c| {
        body["error"]["code"] == c
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
    });
    if got == status && code_ok {
        Ok(())
    } else {
        Err(format!(
            "expected HTTP {status} {}, got {got} {body}",
            code.unwrap_or("")
        ))
    }
}

fn field_is(body: &Value, field: &str, want: &str) -> Judgement {
    match body[field].as_str() {
        Some(got) if got == want => Ok(()),
        _ => Err(format!("expected {field} {want:?} in {body}")),
    }
}

fn reply_of(outcome: &Outcome) -> Result<&Reply, String> {
    match outcome {
        Outcome::Reply(reply) => Ok(reply),
        other => Err(format!("expected an HTTP answer, got {other:?}")),
    }
}

impl Model {
    /// Judges `op`'s `outcome` and applies it; `Err` says why the answer is not one the
    /// model allows.
    pub fn judge(
        &mut self,
        op: &Op,
        outcome: &Outcome,
        bounds: &Bounds,
        touched: &mut Touched,
    ) -> Judgement {
        self.tick += 1;
        if let Op::Advance { .. } = op {
            return self.judge_advance(outcome, touched);
        }
        let reply = reply_of(outcome)?;
        match op {
            Op::Place { buyer, .. } => {
                touched.buyers.push(*buyer);
                self.judge_place(op, reply, bounds, touched)
            }
            Op::Replay { buyer, order, .. } => {
                touched.buyers.push(*buyer);
                touched.orders.push(*order);
                answered(reply, 200, None)?;
                let want = (self.orders[order].id, self.orders[order].status.as_str());
                let got = (
                    reply.1["id"].as_i64().unwrap_or(0),
                    reply.1["status"].as_str(),
                );
                (got == (want.0, Some(want.1)))
                    .then_some(())
                    .ok_or_else(|| format!("a replay answered {}, expected {want:?}", reply.1))
            }
            Op::Pay {
                buyer,
                order,
                decline,
                ..
            } => {
                touched.buyers.push(*buyer);
                touched.orders.push(*order);
                self.judge_pay(*order, *decline, reply)
            }
            Op::Cancel { buyer, order } => {
                touched.buyers.push(*buyer);
                touched.orders.push(*order);
                self.judge_cancel(*order, reply)
            }
            Op::Confirm { buyer, order } => {
                touched.buyers.push(*buyer);
                touched.orders.push(*order);
                self.judge_confirm(*order, reply, touched)
            }
            Op::Step { buyer, part, step } => {
                touched.buyers.push(*buyer);
                touched.orders.push(part.order);
                self.judge_step(part, *step, reply)
            }
            Op::CancelPart { buyer, part } | Op::ReturnPart { buyer, part } => {
                touched.buyers.push(*buyer);
                touched.orders.push(part.order);
                let cancel = matches!(op, Op::CancelPart { .. });
                self.judge_take_back(part, cancel, reply)
            }
            Op::Claim { buyer, campaign } => {
                touched.buyers.push(*buyer);
                self.judge_claim(*buyer, *campaign, reply, bounds, touched)
            }
            Op::Grant { buyer, amount } => {
                touched.buyers.push(*buyer);
                answered(reply, 201, None)?;
                self.grant(*buyer, *amount);
                let balance = self.buyers[*buyer].balance();
                (reply.1["balance"].as_i64() == Some(balance))
                    .then_some(())
                    .ok_or_else(|| format!("grant answered {}, model balance {balance}", reply.1))
            }
            Op::Inbound { product, quantity } => {
                answered(reply, 200, None)?;
                let p = &mut self.products[*product];
                p.on_hand += quantity;
                p.moved.inbound += quantity;
                Ok(())
            }
            Op::Adjust { product, delta } => self.judge_adjust(*product, *delta, reply, bounds),
            Op::Advance { .. } => Ok(()),
        }
    }

    fn judge_place(
        &mut self,
        op: &Op,
        reply: &Reply,
        bounds: &Bounds,
        touched: &mut Touched,
    ) -> Judgement {
        let Op::Place {
            buyer,
            lines,
            coupon,
            points,
            request,
        } = op
        else {
            return Err("not a placement".into());
        };
        let (buyer, points) = (*buyer, *points);
        let mut lines = lines.clone();
        lines.sort_by_key(|(p, _)| self.products[*p].id);
        if code(reply) == Some("out_of_stock") {
            return self.judge_out_of_stock(&lines, reply, bounds);
        }
        for &(p, q) in &lines {
            let product = &self.products[p];
            if product
                .max_per_user
                .is_some_and(|max| self.purchased(buyer, p) + q > max)
            {
                return answered(reply, 422, Some("purchase_limit"));
            }
            if !bounds.may_have(p, q) {
                let available = product.available();
                return Err(format!(
                    "product {} could not have had {q} available (the model has {available}); got {} {}",
                    product.id, reply.0, reply.1
                ));
            }
        }
        let total: i64 = lines.iter().map(|(p, q)| self.products[*p].price * q).sum();
        let discount = match coupon.map(|id| self.buyers[buyer].coupon(id)) {
            None => 0,
            Some(None) => return answered(reply, 404, Some("coupon_not_found")),
            Some(Some(c)) if c.state != CouponState::Issued => {
                return answered(reply, 409, Some("coupon_in_use"))
            }
            Some(Some(c)) => match self.campaigns[c.campaign].discount_on(total) {
                None => return answered(reply, 422, Some("coupon_min_order_not_met")),
                Some(discount) => discount,
            },
        };
        if points > total - discount {
            return answered(reply, 422, Some("points_exceed_payable"));
        }
        if points > self.buyers[buyer].spendable() {
            return answered(reply, 409, Some("insufficient_points"));
        }
        answered(reply, 201, None)?;
        let plan = self.plan(&lines, discount, points);
        let placed = (buyer, request.clone(), *coupon);
        let order = self.placed_order(&reply.1, plan, placed)?;
        touched.orders.push(order.id);
        self.place(order);
        Ok(())
    }

    fn judge_out_of_stock(
        &self,
        lines: &[(usize, i64)],
        reply: &Reply,
        bounds: &Bounds,
    ) -> Judgement {
        answered(reply, 409, Some("out_of_stock"))?;
        let message = reply.1["error"]["message"].as_str().unwrap_or("");
        let line = lines
            .iter()
            .find(|(p, _)| message == format!("product {} is out of stock", self.products[*p].id));
        let Some(&(p, q)) = line else {
            return Err(format!(
                "out_of_stock names none of the order's products: {}",
                reply.1
            ));
        };
        if bounds.may_lack(p, q) {
            Ok(())
        } else {
            let least = bounds.least(p);
            let id = self.products[p].id;
            Err(format!(
                "out_of_stock for {q} of product {id} while it had at least {least} available"
            ))
        }
    }

    /// The placed order as the server answered it, once it agrees with the model's plan.
    fn placed_order(
        &self,
        body: &Value,
        plan: Plan,
        (buyer, request, coupon): (usize, Request, Option<i64>),
    ) -> Result<Order, String> {
        let amounts = [
            ("total", plan.total),
            ("discount", plan.discount),
            ("points_used", plan.points),
            ("payable", plan.payable),
        ];
        for (field, want) in amounts {
            if body[field].as_i64() != Some(want) {
                return Err(format!("placed order's {field} should be {want}: {body}"));
            }
        }
        field_is(body, "status", "pending_payment")?;
        if body["coupon_id"].as_i64() != coupon {
            return Err(format!(
                "placed order's coupon should be {coupon:?}: {body}"
            ));
        }
        let empty = Vec::new();
        let views = body["partner_orders"].as_array().unwrap_or(&empty);
        if views.len() != plan.parts.len() {
            return Err(format!(
                "expected {} partner orders: {body}",
                plan.parts.len()
            ));
        }
        let mut parts = plan.parts;
        for part in &mut parts {
            let partner_id = self.partners[part.partner];
            let view = views
                .iter()
                .find(|v| v["partner_id"].as_i64() == Some(partner_id))
                .ok_or_else(|| format!("no partner order of partner {partner_id}: {body}"))?;
            compare_part(self, part, view)?;
            part.id = view["id"].as_i64().unwrap_or(0);
        }
        Ok(Order {
            id: body["id"]
                .as_i64()
                .ok_or_else(|| format!("no order id: {body}"))?,
            buyer,
            request,
            status: Status::PendingPayment,
            coupon,
            total: plan.total,
            discount: plan.discount,
            points: plan.points,
            payable: plan.payable,
            parts,
            points_taken: Vec::new(),
            overdue: false,
            earned: None,
        })
    }

    fn judge_pay(&mut self, id: i64, decline: bool, reply: &Reply) -> Judgement {
        if decline {
            return answered(reply, 402, Some("payment_declined"));
        }
        let order = &self.orders[&id];
        if order.status == Status::PendingPayment && !order.overdue {
            answered(reply, 200, None)?;
            field_is(&reply.1, "status", "paid")?;
            self.pay(id);
            Ok(())
        } else {
            answered(reply, 409, Some("order_not_payable"))
        }
    }

    fn judge_cancel(&mut self, id: i64, reply: &Reply) -> Judgement {
        let order = &self.orders[&id];
        match order.status {
            Status::PendingPayment => {
                answered(reply, 200, None)?;
                field_is(&reply.1, "status", "cancelled")?;
                self.release(id);
                Ok(())
            }
            Status::Paid if order.shipped() => answered(reply, 409, Some("order_already_shipped")),
            Status::Paid => {
                answered(reply, 200, None)?;
                field_is(&reply.1, "status", "refunded")?;
                self.refund(id);
                Ok(())
            }
            _ => answered(reply, 409, Some("order_not_cancellable")),
        }
    }

    fn judge_confirm(&mut self, id: i64, reply: &Reply, touched: &mut Touched) -> Judgement {
        let order = &self.orders[&id];
        if order.confirmable() {
            answered(reply, 200, None)?;
            field_is(&reply.1, "status", "confirmed")?;
            if self.confirm(id) > 0 {
                touched.earning.push(id);
            }
            Ok(())
        } else if order.status == Status::Paid {
            answered(reply, 409, Some("order_not_delivered"))
        } else {
            answered(reply, 409, Some("order_not_confirmable"))
        }
    }

    fn judge_step(&mut self, part: &PartRef, step: Step, reply: &Reply) -> Judgement {
        let (from, to) = match step {
            Step::Prepare => (Status::Paid, Status::Preparing),
            Step::Ship => (Status::Preparing, Status::Shipped),
            Step::Deliver => (Status::Shipped, Status::Delivered),
        };
        let tick = self.tick;
        let order = self
            .orders
            .get_mut(&part.order)
            .expect("order in the model");
        let model = &mut order.parts[part.index];
        if model.status != from {
            return answered(reply, 409, Some("invalid_transition"));
        }
        answered(reply, 200, None)?;
        field_is(&reply.1, "status", to.as_str())?;
        model.status = to;
        if to == Status::Delivered {
            model.delivered = tick;
        }
        Ok(())
    }

    /// A seller's cancellation (before shipping) or return (after confirmation) of a part.
    fn judge_take_back(&mut self, part: &PartRef, cancel: bool, reply: &Reply) -> Judgement {
        let status = self.orders[&part.order].parts[part.index].status;
        let allowed = if cancel {
            matches!(status, Status::Paid | Status::Preparing)
        } else {
            status == Status::Confirmed
        };
        if !allowed {
            return answered(reply, 409, Some("invalid_transition"));
        }
        answered(reply, 200, None)?;
        if cancel {
            field_is(&reply.1, "status", "cancelled")?;
            self.cancel_part(part.order, part.index);
        } else {
            field_is(&reply.1, "status", "refunded")?;
            self.return_part(part.order, part.index);
        }
        Ok(())
    }

    fn judge_claim(
        &mut self,
        buyer: usize,
        campaign: usize,
        reply: &Reply,
        bounds: &Bounds,
        touched: &mut Touched,
    ) -> Judgement {
        let holds_one = self.buyers[buyer]
            .coupons
            .iter()
            .any(|c| c.campaign == campaign);
        let total = self.campaigns[campaign].total;
        match code(reply) {
            Some("coupon_sold_out") => {
                touched.sold_out.push(campaign);
                answered(reply, 409, Some("coupon_sold_out"))
            }
            Some("coupon_already_issued") if holds_one && bounds.was_open(campaign, total) => {
                answered(reply, 409, Some("coupon_already_issued"))
            }
            _ if holds_one => Err(format!(
                "the buyer holds a coupon of campaign {campaign}: expected \
                 coupon_already_issued (or coupon_sold_out), got {} {}",
                reply.0, reply.1
            )),
            _ => {
                answered(reply, 201, None)?;
                field_is(&reply.1, "status", "issued")?;
                let id = reply.1["id"].as_i64().ok_or("no coupon id")?;
                self.campaigns[campaign].issued += 1;
                self.buyers[buyer].coupons.push(Coupon {
                    id,
                    campaign,
                    state: CouponState::Issued,
                });
                Ok(())
            }
        }
    }

    fn judge_adjust(
        &mut self,
        product: usize,
        delta: i64,
        reply: &Reply,
        bounds: &Bounds,
    ) -> Judgement {
        let p = &mut self.products[product];
        if code(reply) == Some("insufficient_stock") {
            if delta < 0 && bounds.may_lack(product, -delta) {
                return answered(reply, 409, Some("insufficient_stock"));
            }
            let least = bounds.least(product);
            return Err(format!(
                "adjust {delta} refused while product {} had at least {least} available",
                p.id
            ));
        }
        if delta < 0 && !bounds.may_have(product, -delta) {
            return Err(format!(
                "adjust {delta} of product {} could not leave on_hand above held \
                 (the model has {} available); got {} {}",
                p.id,
                p.available(),
                reply.0,
                reply.1
            ));
        }
        answered(reply, 200, None)?;
        p.on_hand += delta;
        p.moved.adjust += delta;
        Ok(())
    }

    /// The clock moved past every deadline and delay. Without a sweep, pending orders are
    /// only overdue; with one, every pending order expires and every paid order with
    /// nothing left to deliver is confirmed, by its last delivery.
    fn judge_advance(&mut self, outcome: &Outcome, touched: &mut Touched) -> Judgement {
        let swept = match outcome {
            Outcome::Advanced => {
                for order in self.orders.values_mut() {
                    order.overdue = order.status == Status::PendingPayment;
                }
                return Ok(());
            }
            Outcome::Swept(swept) => *swept,
            Outcome::Reply(reply) => return Err(format!("a clock step answered {reply:?}")),
        };
        let due: Vec<i64> = (self.orders.values())
            .filter(|o| o.status == Status::PendingPayment)
            .map(|o| o.id)
            .collect();
        let mut confirmable: Vec<(u64, i64)> = (self.orders.values())
            .filter(|o| o.confirmable())
            .map(|o| (o.parts.iter().map(|p| p.delivered).max().unwrap_or(0), o.id))
            .collect();
        confirmable.sort_unstable();
        if (swept.expired, swept.confirmed) != (due.len(), confirmable.len()) {
            return Err(format!(
                "the sweeper expired {} and confirmed {}; the model expected {} and {}",
                swept.expired,
                swept.confirmed,
                due.len(),
                confirmable.len()
            ));
        }
        for id in due {
            self.release(id);
            touched.orders.push(id);
        }
        for (_, id) in confirmable {
            if self.confirm(id) > 0 {
                touched.earning.push(id);
            }
            touched.orders.push(id);
        }
        let buyers = touched.orders.iter().map(|id| self.orders[id].buyer);
        touched.buyers.extend(buyers.collect::<Vec<_>>());
        Ok(())
    }
}

/// One partner order of a placement against the model's plan.
fn compare_part(model: &Model, part: &super::reference::Part, view: &Value) -> Judgement {
    let amounts = [
        ("subtotal", part.subtotal),
        ("discount", part.discount),
        ("points_used", part.points),
        ("payable", part.payable),
    ];
    for (field, want) in amounts {
        if view[field].as_i64() != Some(want) {
            return Err(format!("partner order's {field} should be {want}: {view}"));
        }
    }
    field_is(view, "status", "pending_payment")?;
    let mut items: Vec<(i64, i64)> = (view["items"].as_array().into_iter().flatten())
        .map(|i| {
            (
                i["product_id"].as_i64().unwrap_or(0),
                i["quantity"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    items.sort_unstable();
    let want: Vec<(i64, i64)> = (part.lines.iter())
        .map(|(p, q)| (model.products[*p].id, *q))
        .collect();
    if items == want {
        Ok(())
    } else {
        Err(format!("partner order's items should be {want:?}: {view}"))
    }
}
