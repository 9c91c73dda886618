//! One round: its operations sent at once, and their answers reconciled with the model.
//!
//! Within a round buyers share only stock and coupon campaigns. A stock answer is judged
//! against [`Bounds`]: the least and the most the product could have had available at any
//! moment of the round, from what the other operations actually did (and, for the least,
//! what the refused placements asked: the sold-out gate counts an attempt's units while
//! the database decides it). `out_of_stock` is legal only when the least was short; a
//! placement only when the most was enough. `coupon_sold_out` is legal only when the
//! campaign ends the round full. Effects on shared stock add up, so once every answer is
//! applied the model must equal the server exactly.

use super::ops::{self, Op, Outcome};
use super::reference::Model;
use super::world::World;
use crate::helpers::all_at_once;
use std::sync::Arc;

/// What the other operations of a round could have done to what an operation shares with
/// them. `None` in a dry run, which takes every answer about shared things as it comes.
pub struct Bounds(Option<Shared>);

struct Shared {
    /// Per product, the lowest and highest availability this operation could have met.
    available: Vec<(i64, i64)>,
    /// Per campaign, its coupons issued when the round began.
    issued: Vec<i64>,
}

impl Bounds {
    pub fn trusting() -> Bounds {
        Bounds(None)
    }

    /// For operation `me` of a round that began at `pre`, where `deltas[i][p]` is what
    /// operation `i` did to product `p`'s availability and `asked[i][p]` what it asked of
    /// `p` without getting it: the sold-out gate counts an attempt's units while the
    /// database decides it, so a placement refused for any reason may have made another
    /// look short for a moment.
    pub fn of_round(pre: &Model, deltas: &[Vec<i64>], asked: &[Vec<i64>], me: usize) -> Bounds {
        let available = (pre.products.iter().enumerate())
            .map(|(p, product)| {
                let others = (deltas.iter().zip(asked).enumerate()).filter(|(i, _)| *i != me);
                let (down, up) = others.fold((0, 0), |(down, up), (_, (d, a))| {
                    (down + d[p].min(0) - a[p], up + d[p].max(0))
                });
                (product.available() + down, product.available() + up)
            })
            .collect();
        let issued = pre.campaigns.iter().map(|c| c.issued).collect();
        Bounds(Some(Shared { available, issued }))
    }

    pub(super) fn may_lack(&self, product: usize, quantity: i64) -> bool {
        self.0
            .as_ref()
            .is_none_or(|s| s.available[product].0 < quantity)
    }

    pub(super) fn may_have(&self, product: usize, quantity: i64) -> bool {
        self.0
            .as_ref()
            .is_none_or(|s| s.available[product].1 >= quantity)
    }

    /// The least the product could have had available (for messages).
    pub(super) fn least(&self, product: usize) -> i64 {
        self.0.as_ref().map_or(i64::MIN, |s| s.available[product].0)
    }

    pub(super) fn was_open(&self, campaign: usize, total: i64) -> bool {
        self.0.as_ref().is_none_or(|s| s.issued[campaign] < total)
    }
}

/// What a round touched, for the checks after it.
#[derive(Debug, Default)]
pub struct Touched {
    pub orders: Vec<i64>,
    pub buyers: Vec<usize>,
    /// Orders confirmed in the round that earn points, in the order they were confirmed.
    pub earning: Vec<i64>,
    /// Campaigns that answered `coupon_sold_out`: they must end the round full.
    pub sold_out: Vec<usize>,
}

/// Sends a round's operations, all at once when there are several.
pub async fn run_round(world: &World, ops: &[Op]) -> Vec<Outcome> {
    if let [op] = ops {
        return vec![ops::execute(world, op).await];
    }
    let shared = Arc::new((world.clone(), ops.to_vec()));
    all_at_once(ops.len(), |i| {
        let shared = shared.clone();
        async move { ops::execute(&shared.0, &shared.1[i]).await }
    })
    .await
}

/// Judges every answer of a round and applies it to the model. Each operation is judged
/// against what the others did, or tried, to shared stock (a dry run of each on the model
/// as the round found it), then a campaign that answered sold out must have ended the
/// round full.
pub fn reconcile(model: &mut Model, ops: &[Op], outcomes: &[Outcome]) -> Result<Touched, String> {
    let pre = model.clone();
    let deltas: Vec<Vec<i64>> = (ops.iter().zip(outcomes))
        .map(|(op, outcome)| {
            let mut dry = pre.clone();
            // A wrong answer fails below, when judged for real.
            let _ = dry.judge(op, outcome, &Bounds::trusting(), &mut Touched::default());
            (pre.products.iter().zip(&dry.products))
                .map(|(before, after)| after.available() - before.available())
                .collect()
        })
        .collect();
    let asked: Vec<Vec<i64>> = (ops.iter().zip(outcomes))
        .map(|(op, outcome)| {
            let mut asked = vec![0; pre.products.len()];
            if let (Op::Place { lines, .. }, Outcome::Reply((status, _))) = (op, outcome) {
                if status.as_u16() != 201 {
                    for &(p, q) in lines {
                        asked[p] = q;
                    }
                }
            }
            asked
        })
        .collect();
    let mut touched = Touched::default();
    for (i, (op, outcome)) in ops.iter().zip(outcomes).enumerate() {
        let bounds = Bounds::of_round(&pre, &deltas, &asked, i);
        model
            .judge(op, outcome, &bounds, &mut touched)
            .map_err(|e| format!("{op:?}\n  {e}"))?;
    }
    for &c in &touched.sold_out {
        let campaign = &model.campaigns[c];
        if campaign.issued != campaign.total {
            return Err(format!(
                "campaign {} answered coupon_sold_out with {} of {} issued",
                campaign.id, campaign.issued, campaign.total
            ));
        }
    }
    Ok(touched)
}

/// One line per operation of a round and what came back, for failure messages.
pub fn describe(round: usize, ops: &[Op], outcomes: &[Outcome]) -> String {
    let lines: Vec<String> = (ops.iter().zip(outcomes))
        .map(|(op, outcome)| {
            let answer = match outcome {
                Outcome::Reply((status, body)) => {
                    let what = body["error"]["code"].as_str().map(str::to_owned);
                    let what = what.or_else(|| body["status"].as_str().map(str::to_owned));
                    format!(
                        "{} {} (id {})",
                        status.as_u16(),
                        what.unwrap_or_default(),
                        body["id"]
                    )
                }
                other => format!("{other:?}"),
            };
            format!("  {op:?} -> {answer}")
        })
        .collect();
    format!("round {round}:\n{}", lines.join("\n"))
}
