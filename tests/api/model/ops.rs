//! The operations the model test draws and sends through the API, and what came back.
//!
//! A round is either one clock operation on its own, or one operation for each of a few
//! distinct buyers (plus, now and then, a stock operation), sent at once. An operation for
//! a buyer touches only that buyer's orders, coupons and points, so within a round the
//! buyers contend only for what they share: stock and coupon campaigns.

use super::reference::{Model, Order, Status};
use super::rng::Rng;
use super::world::World;
use crate::helpers::{unique, Reply};
use serde_json::{json, Value};
use stampede::jobs::sweeper::{Sweeper, Swept};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Prepare,
    Ship,
    Deliver,
}

/// A partner order as the operations name it: its order, index there, id and partner.
#[derive(Debug, Clone, Copy)]
pub struct PartRef {
    pub order: i64,
    pub index: usize,
    pub id: i64,
    pub partner: usize,
}

/// A placement as sent: its Idempotency-Key and body (shown by its key alone; the
/// operation around it says what is in the body).
#[derive(Clone)]
pub struct Request {
    pub key: String,
    pub body: Value,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.key)
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    /// `lines` are distinct products with quantities, in the order drawn.
    Place {
        buyer: usize,
        lines: Vec<(usize, i64)>,
        coupon: Option<i64>,
        points: i64,
        request: Request,
    },
    /// The placement of `order` sent again, same key and body.
    Replay {
        buyer: usize,
        order: i64,
        request: Request,
    },
    Pay {
        buyer: usize,
        order: i64,
        amount: i64,
        decline: bool,
    },
    Cancel {
        buyer: usize,
        order: i64,
    },
    Confirm {
        buyer: usize,
        order: i64,
    },
    Step {
        buyer: usize,
        part: PartRef,
        step: Step,
    },
    CancelPart {
        buyer: usize,
        part: PartRef,
    },
    ReturnPart {
        buyer: usize,
        part: PartRef,
    },
    Claim {
        buyer: usize,
        campaign: usize,
    },
    Grant {
        buyer: usize,
        amount: i64,
    },
    Inbound {
        product: usize,
        quantity: i64,
    },
    Adjust {
        product: usize,
        delta: i64,
    },
    /// Moves the clock past every payment deadline and every purchase's confirmation
    /// delay; with `sweep`, the sweeper then runs once.
    Advance {
        sweep: bool,
    },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Place { .. } => "place",
            Op::Replay { .. } => "replay",
            Op::Pay { .. } => "pay",
            Op::Cancel { .. } => "cancel",
            Op::Confirm { .. } => "confirm",
            Op::Step { .. } => "step",
            Op::CancelPart { .. } => "cancel part",
            Op::ReturnPart { .. } => "return part",
            Op::Claim { .. } => "claim",
            Op::Grant { .. } => "grant",
            Op::Inbound { .. } => "inbound",
            Op::Adjust { .. } => "adjust",
            Op::Advance { sweep: true } => "advance and sweep",
            Op::Advance { sweep: false } => "advance",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Reply(Reply),
    Swept(Swept),
    Advanced,
}

impl Outcome {
    /// The status and error code, or what a clock step did.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Reply((status, body)) => match body["error"]["code"].as_str() {
                Some(code) => format!("{} {code}", status.as_u16()),
                None => status.as_u16().to_string(),
            },
            Outcome::Swept(swept) => {
                format!("expired {}, confirmed {}", swept.expired, swept.confirmed)
            }
            Outcome::Advanced => "advanced".into(),
        }
    }
}

/// The operations of the next round.
pub fn next_round(model: &Model, rng: &mut Rng, max_actors: usize) -> Vec<Op> {
    match rng.below(100) {
        0..=3 => return vec![Op::Advance { sweep: true }],
        4..=5 => return vec![Op::Advance { sweep: false }],
        _ => {}
    }
    // One operation per round when one actor is asked for, so a seed replays exactly.
    if max_actors == 1 && rng.chance(25) {
        return vec![stock_op(model, rng)];
    }
    let mut buyers: Vec<usize> = (0..model.buyers.len()).collect();
    let actors = 1 + rng.below(max_actors.min(buyers.len()));
    let mut ops = Vec::with_capacity(actors + 1);
    for _ in 0..actors {
        let buyer = buyers.swap_remove(rng.below(buyers.len()));
        ops.push(buyer_op(model, rng, buyer));
    }
    if max_actors > 1 && rng.chance(35) {
        ops.push(stock_op(model, rng));
    }
    ops
}

fn buyer_op(model: &Model, rng: &mut Rng, buyer: usize) -> Op {
    let orders: Vec<&Order> = model.orders.values().filter(|o| o.buyer == buyer).collect();
    let pick_order = |rng: &mut Rng, wanted: &[Status]| -> Option<&Order> {
        let fitting: Vec<&Order> = orders
            .iter()
            .copied()
            .filter(|o| wanted.is_empty() || wanted.contains(&o.status))
            .collect();
        rng.pick(&fitting)
    };
    // Mostly what the order's state allows, sometimes anything: refusals are checked too.
    let any = |rng: &mut Rng, wanted: &'static [Status]| if rng.chance(85) { wanted } else { &[] };
    let op = match rng.weighted(&[20, 2, 20, 4, 8, 26, 4, 6, 5, 5]) {
        1 => pick_order(rng, &[]).map(|o| Op::Replay {
            buyer,
            order: o.id,
            request: o.request.clone(),
        }),
        2 => {
            let wanted = any(rng, &[Status::PendingPayment]);
            pick_order(rng, wanted).map(|o| Op::Pay {
                buyer,
                order: o.id,
                amount: o.payable,
                decline: rng.chance(8),
            })
        }
        3 => {
            let wanted = any(rng, &[Status::PendingPayment, Status::Paid]);
            pick_order(rng, wanted).map(|o| Op::Cancel { buyer, order: o.id })
        }
        4 => {
            let ready: Vec<&Order> = orders.iter().copied().filter(|o| o.confirmable()).collect();
            let order = match rng.pick(&ready) {
                Some(order) if rng.chance(70) => Some(order),
                _ => {
                    let wanted = any(rng, &[Status::Paid]);
                    pick_order(rng, wanted)
                }
            };
            order.map(|o| Op::Confirm { buyer, order: o.id })
        }
        5 => step_op(&orders, rng, buyer),
        6 => {
            let wanted = any(rng, &[Status::Paid, Status::Preparing]);
            pick_part(&orders, rng, wanted).map(|part| Op::CancelPart { buyer, part })
        }
        7 => {
            let wanted = any(rng, &[Status::Confirmed]);
            pick_part(&orders, rng, wanted).map(|part| Op::ReturnPart { buyer, part })
        }
        8 => Some(Op::Claim {
            buyer,
            campaign: rng.below(model.campaigns.len()),
        }),
        9 => Some(Op::Grant {
            buyer,
            amount: rng.range(1, 30) * 100,
        }),
        _ => None,
    };
    op.unwrap_or_else(|| place_op(model, rng, buyer))
}

fn place_op(model: &Model, rng: &mut Rng, buyer: usize) -> Op {
    let mut products: Vec<usize> = (0..model.products.len()).collect();
    let mut lines = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let product = products.swap_remove(rng.below(products.len()));
        lines.push((product, [1, 1, 1, 1, 2, 2, 3][rng.below(7)]));
    }
    let me = &model.buyers[buyer];
    let mine: Vec<i64> = me.coupons.iter().map(|c| c.id).collect();
    let coupon = if rng.chance(35) {
        rng.pick(&mine)
    } else if rng.chance(3) {
        // Another buyer's coupon: not found, whatever its state.
        let theirs: Vec<i64> = (model.buyers.iter().flat_map(|b| &b.coupons))
            .map(|c| c.id)
            .filter(|id| !mine.contains(id))
            .collect();
        rng.pick(&theirs)
    } else {
        None
    };
    let spendable = me.spendable();
    let priced: i64 = lines
        .iter()
        .map(|(p, q)| model.products[*p].price * q)
        .sum();
    let points = if spendable > 0 && rng.chance(40) {
        rng.range(1, spendable.min(priced))
    } else if rng.chance(3) {
        // More than the buyer has, or than the order costs.
        spendable + rng.range(1, 500)
    } else {
        0
    };
    let items: Vec<Value> = lines
        .iter()
        .map(|(p, q)| json!({"product_id": model.products[*p].id, "quantity": q}))
        .collect();
    let mut body = json!({ "items": items });
    if let Some(id) = coupon {
        body["coupon_id"] = json!(id);
    }
    if points > 0 {
        body["points"] = json!(points);
    }
    Op::Place {
        buyer,
        lines,
        coupon,
        points,
        request: Request {
            key: unique("model-order"),
            body,
        },
    }
}

fn pick_part(orders: &[&Order], rng: &mut Rng, wanted: &[Status]) -> Option<PartRef> {
    let parts: Vec<PartRef> = orders
        .iter()
        .flat_map(|o| {
            o.parts.iter().enumerate().map(|(index, p)| {
                let part = PartRef {
                    order: o.id,
                    index,
                    id: p.id,
                    partner: p.partner,
                };
                (part, p.status)
            })
        })
        .filter(|(_, status)| wanted.is_empty() || wanted.contains(status))
        .map(|(part, _)| part)
        .collect();
    rng.pick(&parts)
}

/// A seller's next step on one of the buyer's parts, or now and then a step out of turn.
fn step_op(orders: &[&Order], rng: &mut Rng, buyer: usize) -> Option<Op> {
    let movable = [Status::Paid, Status::Preparing, Status::Shipped];
    let in_turn = rng.chance(85);
    let wanted: &[Status] = if in_turn { &movable } else { &[] };
    let part = pick_part(orders, rng, wanted)?;
    let status = orders
        .iter()
        .find(|o| o.id == part.order)
        .map(|o| o.parts[part.index].status)?;
    let step = match status {
        Status::Paid if in_turn => Step::Prepare,
        Status::Preparing if in_turn => Step::Ship,
        Status::Shipped if in_turn => Step::Deliver,
        _ => [Step::Prepare, Step::Ship, Step::Deliver][rng.below(3)],
    };
    Some(Op::Step { buyer, part, step })
}

fn stock_op(model: &Model, rng: &mut Rng) -> Op {
    let product = rng.below(model.products.len());
    if rng.chance(65) {
        Op::Inbound {
            product,
            quantity: rng.range(1, 8),
        }
    } else {
        let delta = [-3, -2, -1, -1, 1, 2][rng.below(6)];
        Op::Adjust { product, delta }
    }
}

/// How far the clock jumps: past every payment deadline and every confirmation delay.
pub fn advance_by(world: &World) -> Duration {
    let config = &world.app.state.config;
    Duration::from_secs(config.hold_ttl_secs.max(config.auto_confirm_after_secs) + 1)
}

/// Sends `op` as its actor would.
pub async fn execute(world: &World, op: &Op) -> Outcome {
    let app = &world.app;
    let buyer_token = |b: usize| Some(world.buyers[b].as_str());
    let seller = |part: &PartRef| Some(world.sellers[part.partner].as_str());
    let reply = match op {
        Op::Place { buyer, request, .. } | Op::Replay { buyer, request, .. } => {
            let (key, body) = (&request.key, &request.body);
            app.post_idem("/orders", buyer_token(*buyer), key, body)
                .await
        }
        Op::Pay {
            buyer,
            order,
            amount,
            decline,
        } => {
            let key = unique(if *decline { "decline" } else { "model-pay" });
            let body = json!({"payment_key": key, "amount": amount});
            app.post(&format!("/orders/{order}/pay"), buyer_token(*buyer), &body)
                .await
        }
        Op::Cancel { buyer, order } => {
            app.post_empty(&format!("/orders/{order}/cancel"), buyer_token(*buyer))
                .await
        }
        Op::Confirm { buyer, order } => {
            app.post_empty(&format!("/orders/{order}/confirm"), buyer_token(*buyer))
                .await
        }
        Op::Step { part, step, .. } => {
            let token = seller(part).expect("a seller");
            match step {
                Step::Prepare => app.prepare(token, part.id).await,
                Step::Ship => {
                    let tracking = format!("MODEL-{}", part.id);
                    app.ship(token, part.id, "CJ Logistics", &tracking).await
                }
                Step::Deliver => app.deliver(token, part.id).await,
            }
        }
        Op::CancelPart { part, .. } => {
            let body = json!({"reason": "the model's seller ran out"});
            let path = format!("/partner-orders/{}/cancel", part.id);
            app.post(&path, seller(part), &body).await
        }
        Op::ReturnPart { part, .. } => {
            let body = json!({"reason": "the model's buyer sent it back"});
            let path = format!("/partner-orders/{}/return", part.id);
            app.post(&path, seller(part), &body).await
        }
        Op::Claim { buyer, campaign } => {
            let path = format!("/coupons/{}/issue", world.ids.campaigns[*campaign]);
            app.post_empty(&path, buyer_token(*buyer)).await
        }
        Op::Grant { buyer, amount } => {
            let body = json!({
                "user_id": world.ids.buyers[*buyer],
                "amount": amount,
                "reason": "model grant",
            });
            let key = unique("model-grant");
            app.post_idem("/admin/points/grant", Some(&world.admin), &key, &body)
                .await
        }
        Op::Inbound { product, quantity } => {
            let path = format!("/products/{}/inbound", world.ids.products[*product]);
            app.post(&path, Some(&world.admin), &json!({"quantity": quantity}))
                .await
        }
        Op::Adjust { product, delta } => {
            let path = format!("/products/{}/adjust", world.ids.products[*product]);
            let body = json!({"delta": delta, "memo": "model count"});
            app.post(&path, Some(&world.admin), &body).await
        }
        Op::Advance { sweep } => return advance(world, *sweep).await,
    };
    Outcome::Reply(reply)
}

/// Moves the servers' clock and, with `sweep`, runs the real sweeper once at the new time
/// (its own timer is set far beyond the test, so it never runs on its own).
async fn advance(world: &World, sweep: bool) -> Outcome {
    let app = &world.app;
    app.clock.advance(advance_by(world));
    if !sweep {
        return Outcome::Advanced;
    }
    let config = &app.state.config;
    let sweeper = Sweeper {
        orders: app.state.app.orders.clone(),
        events: app.state.events.clone(),
        interval: Duration::from_millis(config.sweeper_interval_ms),
        batch_max: config.sweeper_batch_max,
        auto_confirm_after_secs: config.auto_confirm_after_secs,
    };
    let swept = sweeper.sweep(app.state.clock.now()).await.expect("sweep");
    Outcome::Swept(swept)
}
