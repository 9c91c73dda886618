//! `stampede loadgen orders`: seed 002's order load test — 1,000 users for 10 minutes, each
//! order with a coupon and points; the seed reports 45,000 orders (75/s), a 380 ms mean, an
//! 800 ms p95 and 1.5% errors — sustained for `--duration`.
//!
//! Before the clock starts (`setup`): the buyers' ids, a partner with `--products`
//! products stocked so none runs out, K coupon campaigns of one coupon per buyer with every
//! buyer claiming one of each, and K × `--points` points granted to every buyer. A coupon
//! serves one order (placing holds it, paying uses it) and a campaign gives a buyer one
//! coupon, so a buyer who orders K times holds K coupons from K campaigns. They are claimed
//! up front rather than after each order because the seed measures orders, not claims (its
//! claim test is `coupon-burst`), and a claim inside the run would add its own latency and
//! writes to every order's figures.
//!
//! The run (`plan` has the arithmetic): attempt n is buyer n mod B ordering one unit of
//! product n mod P with the buyer's (n div B)-th coupon and `--points` points, sent and
//! followed up exactly as a drop's attempts (`follow`: waiting-room tickets, retries with
//! the same Idempotency-Key). Closed loop: `--concurrency` users, each pausing `--think`
//! between orders, until `--duration` is over; open loop: `--rate` orders per second for
//! `--duration`.
//!
//! Afterwards every acknowledged order is read back from the admin listing and must name
//! its buyer's coupon of this run and the points asked for; no order may have been refused
//! for stock; and the ledgers must verify clean. The load generator does not know the
//! server's code, so the caller supplies that last check: the `stampede` binary runs
//! `stampede verify`'s audit against its configured database.

mod plan;
mod setup;

use crate::api::{read_tokens, Admin, MAX_WON};
use crate::args::LoadArgs;
use crate::drop::DropScenario;
use crate::follow::{Follower, Journal};
use crate::report::{self, Judgement, Page};
use crate::{runner, stats, summary};
use anyhow::Context;
use bytes::Bytes;
use plan::{Figures, OrdersCheck, Seed, SEED_002};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct OrdersArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// An admin's access token: creates the products and campaigns, grants the points,
    /// reads the orders back.
    #[arg(long, env = "STAMPEDE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Buyers' access tokens, one per line (`stampede admin provision-buyers`): the users.
    #[arg(long, value_name = "FILE")]
    tokens: PathBuf,
    /// How long orders are sent: `10m`, `30s`, `1500ms`, `1h`.
    #[arg(long, value_parser = plan::parse_duration)]
    duration: Duration,
    /// Closed loop: each user's pause between an answer and its next order.
    #[arg(long, default_value = "0s", value_parser = plan::parse_duration)]
    think: Duration,
    /// Coupons (and so orders) per buyer. Default: what the run can use — rate × duration
    /// ÷ buyers, or for a closed loop with --think, users × (duration ÷ think + 1) ÷ buyers.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=plan::MAX_PER_BUYER))]
    orders_per_buyer: Option<u64>,
    /// Products the orders are spread over (one unit of one product per order).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    products: u32,
    /// Price of every product, in won.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(i64).range(1..=MAX_WON))]
    price: i64,
    /// Every coupon's fixed discount, in won.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(i64).range(1..=MAX_WON))]
    discount: i64,
    /// Points every order spends (1 point = 1 won, taken after the coupon).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(i64).range(1..=MAX_WON))]
    points: i64,
    /// How long an attempt is followed up (waiting-room tickets, retries) before it counts
    /// as failed. Latency includes it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    patience_secs: u64,
    /// Pause between two polls of a waiting-room ticket.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_ms: u64,
    /// Setup requests in flight (claims, grants, buyer look-ups).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    setup_concurrency: u32,
}

/// What the ledger check after the run found: the caller's `verify`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Verified {
    /// What was checked ("checked 20 products, 2,250 orders and 3 coupon campaigns").
    pub checked: String,
    /// Every difference found; empty when clean.
    pub problems: Vec<String>,
}

/// What summary.json adds for an order load test, right after `attempts`.
#[derive(Serialize)]
struct OrdersFacts<'a> {
    placed: u64,
    orders_per_s: f64,
    error_rate: f64,
    correct: bool,
    verdict: &'a str,
    problems: &'a [String],
    notes: &'a [String],
    duration_asked_s: f64,
    think_ms: u128,
    buyers: usize,
    orders_per_buyer: u64,
    products: u32,
    stock_per_product: i64,
    price: i64,
    discount: i64,
    points: i64,
    campaign_ids: &'a [i64],
    /// The run's orders as the admin listing shows them; `null` when they could not be
    /// read (a problem, with the reason).
    orders_read_back: Option<&'a OrdersCheck>,
    /// The ledgers checked after the run (`stampede verify`); `null` when that failed.
    verify_clean: bool,
    verify: Option<&'a Verified>,
    seed_002: Seed,
}

/// Runs the test; `verify` checks the ledgers once the orders are in (see the module doc).
pub async fn run<V, F>(args: OrdersArgs, verify: V) -> anyhow::Result<ExitCode>
where
    V: FnOnce() -> F,
    F: Future<Output = anyhow::Result<Verified>>,
{
    let tokens = read_tokens(&args.tokens)?;
    let sizing = plan::size(
        args.load.rate,
        args.load.concurrency,
        args.duration,
        args.think,
        tokens.len() as u64,
        args.orders_per_buyer,
    )
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.price - args.discount >= args.points,
        "--points {} is more than an order's {} won left after the coupon",
        args.points,
        args.price - args.discount
    );
    let stock = plan::stock_per_product(sizing.attempts, args.products);
    anyhow::ensure!(
        stock <= crate::api::MAX_QUANTITY,
        "{stock} units per product is above the API's limit: give more --products"
    );
    let client = args.load.client()?;
    let target = args.load.targets[0].clone();
    let admin = Admin::new(client.clone(), target.clone(), &args.admin_token)?;
    let run_id = format!("{:016x}", rand::random::<u64>());
    let sizes = setup::Sizes {
        products: args.products,
        stock_per_product: stock,
        price: args.price,
        discount: args.discount,
        per_buyer: sizing.per_buyer,
        points_each: args.points.saturating_mul(sizing.per_buyer as i64),
        width: args.setup_concurrency as usize,
    };
    eprintln!(
        "orders: setting up {} buyers × {} coupons, {} products of {stock} units",
        tokens.len(),
        sizing.per_buyer,
        args.products
    );
    let prepared = setup::prepare(&client, &target, &admin, &tokens, &sizes, &run_id)
        .await
        .context("setting up the order load test")?;
    let watermark = admin.latest_order_id().await.map_err(|e| format!("{e:#}"));
    let info = args.load.info("orders");
    let scenario = Arc::new(DropScenario {
        follower: Arc::new(Follower {
            client,
            targets: args.load.targets.clone(),
            order_urls: args.load.endpoints("/api/v1/orders")?,
            bodies: bodies(&args, &prepared, tokens.len(), &sizing)?,
            tokens,
            key_prefix: format!("lg-{run_id}"),
            patience: Duration::from_secs(args.patience_secs),
            poll_every: Duration::from_millis(args.poll_ms),
            journal: Journal::default(),
        }),
    });
    let mut load_plan = args.load.plan(sizing.attempts);
    load_plan.until = Some(args.duration);
    load_plan.think = args.think;
    let recording = runner::run(scenario.clone(), load_plan, "orders", "placed").await?;
    let analysis = stats::analyse(&recording);
    eprintln!("{}", summary::final_line(&info, "placed", &analysis));
    let figures = plan::figures(&analysis);
    let journal = &scenario.follower.journal;
    let read_back = read_back(&admin, watermark, &prepared, journal, &args, &analysis).await;
    let verified = verify().await.map_err(|e| format!("{e:#}"));
    let judged = judge(&args, &analysis, &sizing, &read_back, &verified);
    let facts = OrdersFacts {
        placed: figures.placed,
        orders_per_s: figures.orders_per_s,
        error_rate: figures.error_rate,
        correct: judged.problems.is_empty(),
        verdict: &judged.text,
        problems: &judged.problems,
        notes: &judged.notes,
        duration_asked_s: args.duration.as_secs_f64(),
        think_ms: args.think.as_millis(),
        buyers: prepared.user_ids.len(),
        orders_per_buyer: sizing.per_buyer,
        products: args.products,
        stock_per_product: stock,
        price: args.price,
        discount: args.discount,
        points: args.points,
        campaign_ids: &prepared.campaign_ids,
        orders_read_back: read_back.as_ref().ok(),
        verify_clean: verified.as_ref().is_ok_and(|v| v.problems.is_empty()),
        verify: verified.as_ref().ok(),
        seed_002: SEED_002,
    };
    write(&args, &info, &analysis, &figures, &facts, &judged)?;
    Ok(if judged.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Attempt n's body, serialised before the run (see `plan::slot`).
fn bodies(
    args: &OrdersArgs,
    prepared: &setup::Prepared,
    buyers: usize,
    sizing: &plan::Sizing,
) -> anyhow::Result<Vec<Bytes>> {
    (0..sizing.attempts)
        .map(|n| {
            let slot = plan::slot(n, buyers, sizing.per_buyer, prepared.product_ids.len());
            let body = serde_json::json!({
                "items": [{ "product_id": prepared.product_ids[slot.product], "quantity": 1 }],
                "coupon_id": prepared.coupons[slot.coupon],
                "points": args.points,
            });
            Ok(serde_json::to_vec(&body)?.into())
        })
        .collect()
}

/// The run's orders from the admin listing, checked against what the client was told.
async fn read_back(
    admin: &Admin,
    watermark: Result<i64, String>,
    prepared: &setup::Prepared,
    journal: &Journal,
    args: &OrdersArgs,
    analysis: &stats::Analysis,
) -> Result<OrdersCheck, String> {
    let rows = admin
        .orders_after(watermark?)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let per_buyer = prepared.campaign_ids.len();
    let owner_of: HashMap<i64, i64> = prepared
        .coupons
        .iter()
        .enumerate()
        .map(|(i, coupon)| (*coupon, prepared.user_ids[i / per_buyer]))
        .collect();
    Ok(plan::check_orders(
        &rows,
        &journal.orders(),
        &owner_of,
        args.points,
        analysis.tally.errors,
    ))
}

struct Judged {
    text: String,
    problems: Vec<String>,
    notes: Vec<String>,
}

fn judge(
    args: &OrdersArgs,
    analysis: &stats::Analysis,
    sizing: &plan::Sizing,
    read_back: &Result<OrdersCheck, String>,
    verified: &Result<Verified, String>,
) -> Judged {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match read_back {
        Ok(check) => {
            problems.extend(check.problems.iter().cloned());
            notes.extend(check.notes.iter().cloned());
        }
        Err(e) => problems.push(format!("could not read the orders back: {e}")),
    }
    match verified {
        Ok(v) if v.problems.is_empty() => {}
        Ok(v) => problems.push(format!(
            "verify found {} difference(s): {}",
            v.problems.len(),
            v.problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(e) => problems.push(format!("could not verify: {e}")),
    }
    let out_of_stock = analysis.tally.rejected_with("out_of_stock");
    if out_of_stock > 0 {
        problems.push(format!(
            "{out_of_stock} order(s) found a product out of stock"
        ));
    }
    // A closed loop stops early only when every coupon has been used. Users without a
    // think time work until the deadline; with one, a user's last answer comes less than a
    // think time before it (a pause past the deadline is not taken). No slack beyond that:
    // a 5 s run that ran dry at 4.6 s did not run for 5 s.
    let short = analysis.duration_s + args.think.as_secs_f64() < args.duration.as_secs_f64();
    if args.load.rate.is_none() && analysis.tally.attempts >= sizing.attempts && short {
        problems.push(format!(
            "every coupon was used after {:.1} s of {:.1} s: give --orders-per-buyer",
            analysis.duration_s,
            args.duration.as_secs_f64()
        ));
    }
    let text = if problems.is_empty() {
        let verify = verified.as_ref().map_or("", |v| v.checked.as_str());
        format!(
            "correct: {} orders, each with its buyer's coupon and {} points; verify clean ({verify})",
            analysis.tally.ok, args.points
        )
    } else {
        format!("WRONG: {}", problems.join("; "))
    };
    Judged {
        text,
        problems,
        notes,
    }
}

/// summary.json, report.html, and on standard output the run beside seed 002, the errors
/// by code and the verdict.
fn write(
    args: &OrdersArgs,
    info: &summary::RunInfo,
    analysis: &stats::Analysis,
    figures: &Figures,
    facts: &OrdersFacts,
    judged: &Judged,
) -> anyhow::Result<()> {
    let html = report::render(&Page {
        run: info,
        ok_label: "placed",
        judgement: Some(Judgement {
            correct: judged.problems.is_empty(),
            text: &judged.text,
            notes: &judged.notes,
        }),
        facts: vec![
            ("buyers (tokens)", facts.buyers.to_string()),
            ("coupons per buyer", facts.orders_per_buyer.to_string()),
            (
                "products",
                format!("{} × {} units", args.products, facts.stock_per_product),
            ),
            ("points per order", args.points.to_string()),
            (
                "orders/s",
                format!("{:.1} (seed 002: 75)", figures.orders_per_s),
            ),
            (
                "error rate",
                format!("{:.2}% (seed 002: 1.5%)", figures.error_rate * 100.0),
            ),
        ],
        analysis,
    });
    let (json_path, html_path) = summary::write_outputs(
        &args.load.out,
        &summary::summary(info, analysis, facts),
        &html,
    )?;
    print!("{}", plan::beside_seed(figures, &SEED_002));
    println!("{}", errors_line(analysis));
    println!("{}", judged.text);
    for note in &judged.notes {
        println!("note: {note}");
    }
    println!(
        "summary: {}\nreport: {}",
        json_path.display(),
        html_path.display()
    );
    Ok(())
}

/// Every attempt that placed nothing, by code (refusals) or kind (no answer).
fn errors_line(analysis: &stats::Analysis) -> String {
    let t = &analysis.tally;
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for (code, n) in &t.rejected_by_code {
        by.insert(code, *n);
    }
    for (kind, n) in &t.errors_by_kind {
        *by.entry(kind).or_default() += n;
    }
    if by.is_empty() {
        return "errors by code: none".into();
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(code, n)| format!("{code} {n} ({:.2}%)", *n as f64 * 100.0 / t.attempts as f64))
        .collect();
    format!("errors by code: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::runner::Recording;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OrdersArgs,
    }

    fn args(extra: &str) -> OrdersArgs {
        let line = format!(
            "orders --target http://a:1 --admin-token t --tokens f --concurrency 2 --out o {extra}"
        );
        Cli::try_parse_from(line.split_whitespace()).unwrap().args
    }

    fn analysis(outcomes: Vec<Outcome>, codes: &[&str], secs: f64) -> stats::Analysis {
        let n = outcomes.len();
        stats::analyse(&Recording {
            outcomes,
            latency_us: vec![1_000; n],
            finish_ms: vec![1; n],
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            duration: Duration::from_secs_f64(secs),
        })
    }

    fn clean() -> Result<Verified, String> {
        Ok(Verified {
            checked: "checked 1 products".into(),
            problems: Vec::new(),
        })
    }

    #[test]
    fn a_run_is_correct_only_when_read_back_and_verify_are_clean() {
        let open = args("--duration 2s --rate 2");
        let sizing = plan::Sizing {
            attempts: 4,
            per_buyer: 2,
        };
        let ok = analysis(vec![Outcome::Ok; 4], &[], 2.0);
        let read = Ok(OrdersCheck::default());
        let good = judge(&open, &ok, &sizing, &read, &clean());
        assert!(good.problems.is_empty(), "{:?}", good.problems);
        assert!(good.text.starts_with("correct: 4 orders"), "{}", good.text);

        let drift = Ok(Verified {
            checked: String::new(),
            problems: vec!["product 1: on_hand 3, ledger 4".into()],
        });
        let wrong = judge(&open, &ok, &sizing, &read, &drift);
        assert!(
            wrong.text.contains("verify found 1 difference"),
            "{}",
            wrong.text
        );
        let unverified = judge(&open, &ok, &sizing, &read, &Err("no database".into()));
        assert!(unverified.text.contains("could not verify"));
        let unread = judge(&open, &ok, &sizing, &Err("down".into()), &clean());
        assert!(unread.text.contains("could not read the orders back"));

        let sold_out = analysis(
            vec![Outcome::Ok, Outcome::Rejected(0)],
            &["out_of_stock"],
            2.0,
        );
        let wrong = judge(&open, &sold_out, &sizing, &read, &clean());
        assert!(wrong.text.contains("out of stock"), "{}", wrong.text);
    }

    #[test]
    fn a_closed_loop_that_ran_out_of_coupons_early_is_not_the_test_asked_for() {
        let closed = args("--duration 10s --orders-per-buyer 2");
        let sizing = plan::Sizing {
            attempts: 4,
            per_buyer: 2,
        };
        let early = analysis(vec![Outcome::Ok; 4], &[], 3.0);
        let read = Ok(OrdersCheck::default());
        let wrong = judge(&closed, &early, &sizing, &read, &clean());
        assert!(
            wrong.text.contains("every coupon was used"),
            "{}",
            wrong.text
        );
        let nearly = analysis(vec![Outcome::Ok; 4], &[], 9.6);
        assert!(!judge(&closed, &nearly, &sizing, &read, &clean())
            .problems
            .is_empty());
        // Ran for the whole duration with coupons left: fine.
        let full = analysis(vec![Outcome::Ok; 3], &[], 10.0);
        assert!(judge(&closed, &full, &sizing, &read, &clean())
            .problems
            .is_empty());
        // Users thinking 4 s stop up to 4 s early (a pause past the deadline is not taken).
        let thinking = args("--duration 10s --think 4s");
        let paused = analysis(vec![Outcome::Ok; 4], &[], 6.5);
        assert!(judge(&thinking, &paused, &sizing, &read, &clean())
            .problems
            .is_empty());
    }

    #[test]
    fn errors_are_listed_by_code_with_their_share() {
        let a = analysis(
            vec![
                Outcome::Ok,
                Outcome::Rejected(0),
                Outcome::Failed(crate::outcome::ErrorKind::Timeout),
                Outcome::Ok,
            ],
            &["insufficient_points"],
            1.0,
        );
        assert_eq!(
            errors_line(&a),
            "errors by code: insufficient_points 1 (25.00%), timeout 1 (25.00%)"
        );
        let none = analysis(vec![Outcome::Ok], &[], 1.0);
        assert_eq!(errors_line(&none), "errors by code: none");
    }
}
