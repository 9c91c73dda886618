//! The server's books against the model's, read through the API as the buyers, sellers and
//! admins see them: stock levels and their ledger, campaign counts, each buyer's points
//! and coupons, each order and its partner orders; and `verify` over the whole database.

use super::reference::{Model, Order};
use super::world::World;
use crate::helpers::Reply;
use serde_json::Value;

type Check = Result<(), String>;

fn body_of(reply: Reply, what: &str) -> Result<Value, String> {
    if reply.0.as_u16() == 200 {
        Ok(reply.1)
    } else {
        Err(format!("reading {what}: HTTP {} {}", reply.0, reply.1))
    }
}

fn same(what: String, server: Option<i64>, model: i64) -> Check {
    if server == Some(model) {
        Ok(())
    } else {
        Err(format!("{what}: server {server:?}, model {model}"))
    }
}

/// Every product's `on_hand` and `held`, and the invariants of the model's own stock.
pub async fn products(world: &World, model: &Model) -> Check {
    for p in &model.products {
        if p.held < 0 || p.available() < 0 {
            return Err(format!("the model oversold product {}: {p:?}", p.id));
        }
        let path = format!("/products/{}/stock", p.id);
        let stock = body_of(world.app.get(&path, Some(&world.admin)).await, &path)?;
        same(
            format!("product {} on_hand", p.id),
            stock["on_hand"].as_i64(),
            p.on_hand,
        )?;
        same(
            format!("product {} held", p.id),
            stock["held"].as_i64(),
            p.held,
        )?;
    }
    Ok(())
}

/// Every campaign's count of issued coupons, never above its total.
pub async fn campaigns(world: &World, model: &Model) -> Check {
    for c in &model.campaigns {
        if c.issued > c.total {
            return Err(format!("the model issued too many coupons: {c:?}"));
        }
        let path = format!("/coupons/{}", c.id);
        let campaign = body_of(world.app.get(&path, None).await, &path)?;
        same(
            format!("campaign {} issued", c.id),
            campaign["issued"].as_i64(),
            c.issued,
        )?;
    }
    Ok(())
}

/// A buyer's points account as `GET /me/points` shows it.
pub async fn points(world: &World, model: &Model, buyer: usize) -> Check {
    let b = &model.buyers[buyer];
    if let Some(lot) =
        (b.lots.iter()).find(|l| !(0 <= l.held && l.held <= l.remaining && l.remaining <= l.amount))
    {
        return Err(format!("the model broke a lot of buyer {}: {lot:?}", b.id));
    }
    let token = Some(world.buyers[buyer].as_str());
    let points = body_of(world.app.get("/me/points", token).await, "/me/points")?;
    same(
        format!("buyer {} points balance", b.id),
        points["balance"].as_i64(),
        b.balance(),
    )?;
    same(
        format!("buyer {} points held", b.id),
        points["held"].as_i64(),
        b.held(),
    )
}

/// A buyer's points and coupons.
pub async fn buyer(world: &World, model: &Model, buyer: usize) -> Check {
    points(world, model, buyer).await?;
    let b = &model.buyers[buyer];
    let token = Some(world.buyers[buyer].as_str());
    let path = "/me/coupons?page=1&size=100";
    let coupons = body_of(world.app.get(path, token).await, path)?;
    let mut server: Vec<(i64, i64, String, Option<i64>)> = (coupons["items"].as_array())
        .into_iter()
        .flatten()
        .map(|c| {
            let status = c["status"].as_str().unwrap_or("?").to_owned();
            (
                c["id"].as_i64().unwrap_or(0),
                c["campaign_id"].as_i64().unwrap_or(0),
                status,
                c["order_id"].as_i64(),
            )
        })
        .collect();
    server.sort();
    let mut wanted: Vec<(i64, i64, String, Option<i64>)> = (b.coupons.iter())
        .map(|c| {
            let campaign = model.campaigns[c.campaign].id;
            (c.id, campaign, c.state.as_str().to_owned(), c.state.order())
        })
        .collect();
    wanted.sort();
    if server == wanted {
        Ok(())
    } else {
        Err(format!(
            "buyer {} coupons: server {server:?}, model {wanted:?}",
            b.id
        ))
    }
}

/// One order as its buyer reads it.
pub async fn order(world: &World, model: &Model, id: i64) -> Check {
    let order = &model.orders[&id];
    let path = format!("/orders/{id}");
    let token = Some(world.buyers[order.buyer].as_str());
    let view = body_of(world.app.get(&path, token).await, &path)?;
    compare_order(order, &view)
}

/// Every order of every buyer, from `GET /orders`.
pub async fn all_orders(world: &World, model: &Model) -> Check {
    for (buyer, token) in world.buyers.iter().enumerate() {
        let mut seen = 0;
        for page in 1.. {
            let path = format!("/orders?page={page}&size=100");
            let body = body_of(world.app.get(&path, Some(token)).await, &path)?;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            for view in &items {
                let id = view["id"].as_i64().unwrap_or(0);
                let order = model.orders.get(&id).filter(|o| o.buyer == buyer);
                compare_order(
                    order.ok_or(format!("order {id} is not in the model"))?,
                    view,
                )?;
            }
            seen += items.len();
            if items.len() < 100 {
                break;
            }
        }
        let wanted = model.orders.values().filter(|o| o.buyer == buyer).count();
        if seen != wanted {
            return Err(format!(
                "buyer {buyer} lists {seen} orders, the model has {wanted}"
            ));
        }
    }
    Ok(())
}

fn compare_order(order: &Order, view: &Value) -> Check {
    let id = order.id;
    if view["status"].as_str() != Some(order.status.as_str()) {
        return Err(format!(
            "order {id} should be {}: {view}",
            order.status.as_str()
        ));
    }
    same(
        format!("order {id} total"),
        view["total"].as_i64(),
        order.total,
    )?;
    same(
        format!("order {id} discount"),
        view["discount"].as_i64(),
        order.discount,
    )?;
    same(
        format!("order {id} payable"),
        view["payable"].as_i64(),
        order.payable,
    )?;
    same(
        format!("order {id} points_used"),
        view["points_used"].as_i64(),
        order.points,
    )?;
    let empty = Vec::new();
    let parts = view["partner_orders"].as_array().unwrap_or(&empty);
    for part in &order.parts {
        let shown = parts
            .iter()
            .find(|p| p["id"].as_i64() == Some(part.id))
            .ok_or_else(|| format!("order {id} lacks partner order {}: {view}", part.id))?;
        if shown["status"].as_str() != Some(part.status.as_str()) {
            let want = part.status.as_str();
            return Err(format!(
                "partner order {} of order {id} should be {want}: {view}",
                part.id
            ));
        }
    }
    // A paid order records its last delivery exactly when nothing is left to deliver.
    if order.status == super::reference::Status::Paid
        && view["delivered_at"].is_null() == order.confirmable()
    {
        return Err(format!(
            "order {id}'s delivered_at disagrees with its parts: {view}"
        ));
    }
    Ok(())
}

/// Each product's stock ledger, summed by kind, against the movements the model made.
pub async fn ledgers(world: &World, model: &Model) -> Check {
    for p in &model.products {
        let mut sums = super::reference::Moved::default();
        for page in 1.. {
            let path = format!("/products/{}/movements?page={page}&size=100", p.id);
            let body = body_of(world.app.get(&path, Some(&world.admin)).await, &path)?;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            for m in &items {
                let quantity = m["quantity"].as_i64().unwrap_or(0);
                let sum = match m["kind"].as_str() {
                    Some("inbound") => &mut sums.inbound,
                    Some("adjust") => &mut sums.adjust,
                    Some("hold") => &mut sums.hold,
                    Some("release") => &mut sums.release,
                    Some("commit") => &mut sums.commit,
                    Some("return") => &mut sums.returned,
                    _ => return Err(format!("unknown movement {m}")),
                };
                *sum += quantity;
            }
            if items.len() < 100 {
                break;
            }
        }
        if sums != p.moved {
            return Err(format!(
                "product {} ledger by kind: server {sums:?}, model {:?} (sold: model {})",
                p.id,
                p.moved,
                p.sold()
            ));
        }
    }
    Ok(())
}

/// What `stampede verify` checks, over the whole database.
pub async fn verify(world: &World) -> Check {
    let report = stampede::app::audit::run(&*world.app.state.store)
        .await
        .map_err(|e| format!("verify failed to run: {e:#}"))?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("verify found: {:#?}", report.problems))
    }
}
