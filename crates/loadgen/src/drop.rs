//! `stampede loadgen drop`: a limited-edition drop. Creates a partner and a product with
//! `--stock` units, fires `--attempts` purchases at it from the buyers' tokens (round-robin,
//! one fresh Idempotency-Key each), follows up every attempt its first answer did not
//! decide (waiting-room tickets, retries: `follow`), then reads the product and the admin
//! order listing back and judges whether the server sold exactly what it had. Besides
//! summary.json and report.html it writes `orders.txt` (every order id the server
//! acknowledged, one per line) and `tickets.json` (every `202` ticket and its end), for
//! checks against the database (scripts/faults.sh).

use crate::api::{read_tokens, Admin, Created, StockState, MAX_QUANTITY, MAX_WON};
use crate::args::LoadArgs;
use crate::follow::{self, Follower, Journal, PostRead, Retry, TicketEnd};
use crate::outcome::{ErrorKind, Outcome};
use crate::report::{self, Judgement, Page};
use crate::runner::{self, Answer, FollowUp, Reply, Scenario, MAX_ATTEMPTS};
use crate::verdict::{self, Expected, Ledger, Seen, Verdict};
use crate::{api, stats, summary};
use anyhow::Context;
use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode};
use serde::Serialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct DropArgs {
    #[command(flatten)]
    pub(super) load: LoadArgs,
    /// An admin's access token: creates the partner and the product, reads orders back.
    #[arg(long, env = "STAMPEDE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Buyers' access tokens, one per line (`stampede admin provision-buyers`), used round-robin.
    #[arg(long, value_name = "FILE")]
    tokens: PathBuf,
    /// Units of the product created for the drop.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..=MAX_QUANTITY))]
    stock: i64,
    /// Purchase attempts to fire.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_ATTEMPTS))]
    attempts: u64,
    /// Units per attempt.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=MAX_QUANTITY))]
    quantity: i64,
    /// Purchase limit per buyer: set on the product, and checked afterwards.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=MAX_QUANTITY))]
    max_per_user: Option<i64>,
    /// Price per unit, in won.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(0..=MAX_WON))]
    price: i64,
    /// How long an attempt is followed up (waiting-room tickets polled, retries after no
    /// answer or 502/503/504) before it counts as failed. Latency includes it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    patience_secs: u64,
    /// Pause between two polls of a waiting-room ticket.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_ms: u64,
}

/// What summary.json adds for a drop, right after `attempts`.
#[derive(Serialize)]
struct DropFacts<'a> {
    /// Attempts that ended in an order: 201, a ticket placed, a replay on a retry.
    sold: u64,
    /// Units sold beyond the stock (0 when correct).
    oversold: i64,
    correct: bool,
    verdict: &'a str,
    problems: &'a [String],
    notes: &'a [String],
    stock: i64,
    quantity: i64,
    max_per_user: Option<i64>,
    price: i64,
    product_id: i64,
    buyers: usize,
    product_after: Option<StockState>,
    orders_listed: Option<&'a Ledger>,
    /// Tickets, retries and the orders the server acknowledged.
    followed: &'a follow::Followed,
}

pub async fn run(args: DropArgs) -> anyhow::Result<ExitCode> {
    let tokens = read_tokens(&args.tokens)?;
    let client = args.load.client()?;
    let admin = Admin::new(
        client.clone(),
        args.load.targets[0].clone(),
        &args.admin_token,
    )?;
    let run_id = format!("{:016x}", rand::random::<u64>());
    let product_id = setup(&admin, &args, &run_id).await?;
    // Orders above this id are the run's, which bounds the listing read afterwards.
    let watermark = admin.latest_order_id().await.map_err(|e| format!("{e:#}"));
    let info = args.load.info("drop");
    let scenario = Arc::new(DropScenario {
        follower: Arc::new(Follower {
            client,
            targets: args.load.targets.clone(),
            order_urls: args.load.endpoints("/api/v1/orders")?,
            tokens,
            bodies: vec![order_body(product_id, args.quantity)?],
            key_prefix: format!("lg-{run_id}"),
            patience: Duration::from_secs(args.patience_secs),
            poll_every: Duration::from_millis(args.poll_ms),
            journal: Journal::default(),
        }),
    });
    let recording = runner::run(
        scenario.clone(),
        args.load.plan(args.attempts),
        "drop",
        "sold",
    )
    .await?;
    let analysis = stats::analyse(&recording);
    eprintln!("{}", summary::final_line(&info, "sold", &analysis));
    let checked = check(
        &admin,
        &args,
        &scenario,
        &recording.outcomes,
        &analysis,
        product_id,
        watermark,
    )
    .await;
    let journal = &scenario.follower.journal;
    let (json_path, html_path) = write(
        &args,
        &info,
        &analysis,
        &checked,
        product_id,
        scenario.follower.tokens.len(),
    )?;
    write_journal(&args.load.out, journal)?;
    print_verdict(&checked.verdict);
    println!("{}", followed_line(&checked.followed));
    println!(
        "summary: {}\nreport: {}",
        json_path.display(),
        html_path.display()
    );
    Ok(if checked.verdict.correct {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The product and the listing as read back after the run, and the judgement on them.
struct Checked {
    seen: Seen,
    followed: follow::Followed,
    product: Result<StockState, String>,
    ledger: Result<Ledger, String>,
    verdict: Verdict,
}

async fn check(
    admin: &Admin,
    args: &DropArgs,
    scenario: &DropScenario,
    outcomes: &[Outcome],
    analysis: &stats::Analysis,
    product_id: i64,
    watermark: Result<i64, String>,
) -> Checked {
    let expected = Expected {
        stock: args.stock,
        quantity: args.quantity,
        max_per_user: args.max_per_user,
    };
    let journal = &scenario.follower.journal;
    let followed = journal.facts();
    let seen = Seen {
        attempts: analysis.tally.attempts,
        sold: analysis.tally.ok,
        out_of_stock: analysis.tally.rejected_with("out_of_stock"),
        errors: analysis.tally.errors,
        tokens_over_limit: tokens_over_limit(
            outcomes,
            scenario.follower.tokens.len(),
            args.quantity,
            args.max_per_user,
        ),
        tickets_lost: followed.tickets_ended(TicketEnd::Lost),
        tickets_unresolved: followed.tickets_ended(TicketEnd::Unresolved)
            + followed.tickets_ended(TicketEnd::Refused),
    };
    let acknowledged = journal.orders();
    let product = admin.stock(product_id).await.map_err(|e| format!("{e:#}"));
    let orders = match watermark {
        Ok(watermark) => admin
            .orders_after(watermark)
            .await
            .map_err(|e| format!("{e:#}")),
        Err(e) => Err(e),
    };
    let ledger =
        orders.map(|orders| verdict::ledger(&orders, product_id, &acknowledged, args.max_per_user));
    let verdict = verdict::judge(&expected, &seen, &product, &ledger);
    Checked {
        seen,
        followed,
        product,
        ledger,
        verdict,
    }
}

fn write(
    args: &DropArgs,
    info: &summary::RunInfo,
    analysis: &stats::Analysis,
    checked: &Checked,
    product_id: i64,
    buyers: usize,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let verdict = &checked.verdict;
    let facts = DropFacts {
        sold: checked.seen.sold,
        oversold: verdict.oversold,
        correct: verdict.correct,
        verdict: &verdict.text,
        problems: &verdict.problems,
        notes: &verdict.notes,
        stock: args.stock,
        quantity: args.quantity,
        max_per_user: args.max_per_user,
        price: args.price,
        product_id,
        buyers,
        product_after: checked.product.as_ref().ok().copied(),
        orders_listed: checked.ledger.as_ref().ok(),
        followed: &checked.followed,
    };
    let html = report::render(&Page {
        run: info,
        ok_label: "sold",
        judgement: Some(Judgement {
            correct: verdict.correct,
            text: &verdict.text,
            notes: &verdict.notes,
        }),
        facts: report_facts(args, product_id, buyers, verdict),
        analysis,
    });
    summary::write_outputs(
        &args.load.out,
        &summary::summary(info, analysis, facts),
        &html,
    )
}

/// `orders.txt`: every order id the server acknowledged, ascending, one per line; and
/// `tickets.json`: every `202` ticket and how it ended, by attempt.
fn write_journal(dir: &Path, journal: &Journal) -> anyhow::Result<()> {
    let mut orders = journal.orders();
    orders.sort_unstable();
    let lines: String = orders.iter().map(|id| format!("{id}\n")).collect();
    let path = dir.join("orders.txt");
    std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    let mut tickets = serde_json::to_vec_pretty(&journal.tickets())?;
    tickets.push(b'\n');
    let path = dir.join("tickets.json");
    std::fs::write(&path, tickets).with_context(|| format!("writing {}", path.display()))
}

fn followed_line(f: &follow::Followed) -> String {
    let ends: Vec<String> = f
        .tickets_by_end
        .iter()
        .map(|(end, n)| format!("{} {n}", end.as_str()))
        .collect();
    format!(
        "followed: {} orders acknowledged ({} learnt from a replay), {} tickets ({}), {} retries",
        f.orders_acknowledged,
        f.orders_replayed_on_retry,
        f.tickets,
        if ends.is_empty() {
            "none".to_owned()
        } else {
            ends.join(", ")
        },
        f.retries
    )
}

/// The body every attempt sends, serialised once.
fn order_body(product_id: i64, quantity: i64) -> anyhow::Result<Bytes> {
    let body = serde_json::json!({ "items": [{ "product_id": product_id, "quantity": quantity }] });
    Ok(serde_json::to_vec(&body)?.into())
}

/// Creates the drop's partner and product through the first target; returns the product id.
async fn setup(admin: &Admin, args: &DropArgs, run_id: &str) -> anyhow::Result<i64> {
    let partner_id = admin
        .create_partner(&format!("loadgen partner {run_id}"))
        .await?;
    let product = serde_json::json!({
        "name": format!("loadgen drop {run_id}"),
        "price": args.price,
        "stock": args.stock,
        "partner_id": partner_id,
        "max_per_user": args.max_per_user,
    });
    admin.create_product(&product).await
}

/// Buyers answered 201 for more than `limit` units in total. Attempt n used token n % tokens.
fn tokens_over_limit(
    outcomes: &[Outcome],
    tokens: usize,
    quantity: i64,
    limit: Option<i64>,
) -> u64 {
    let Some(limit) = limit else { return 0 };
    let mut units = vec![0i64; tokens];
    for (n, _) in outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == Outcome::Ok)
    {
        units[n % tokens] += quantity;
    }
    units.iter().filter(|&&u| u > limit).count() as u64
}

fn report_facts(
    args: &DropArgs,
    product_id: i64,
    buyers: usize,
    verdict: &Verdict,
) -> Vec<(&'static str, String)> {
    vec![
        ("stock", args.stock.to_string()),
        ("units per attempt", args.quantity.to_string()),
        (
            "limit per buyer",
            args.max_per_user
                .map_or_else(|| "none".into(), |m| m.to_string()),
        ),
        ("buyers (tokens)", buyers.to_string()),
        ("product id", product_id.to_string()),
        ("oversold", verdict.oversold.to_string()),
    ]
}

fn print_verdict(verdict: &Verdict) {
    println!("{}", verdict.text);
    for note in &verdict.notes {
        println!("note: {note}");
    }
}

/// Order attempts as a buyer's client sends them; shared with `orders`, whose attempts
/// differ only in their bodies.
pub(crate) struct DropScenario {
    /// Sends the attempts and follows them up; its journal holds the acknowledged orders
    /// for the cross-check with the admin listing.
    pub(crate) follower: Arc<Follower>,
}

impl DropScenario {
    fn follow_up(&self, attempt: u64, read: PostRead) -> FollowUp {
        Box::pin(self.follower.clone().follow(attempt, read))
    }
}

impl Scenario for DropScenario {
    fn request(&self, attempt: u64) -> RequestBuilder {
        self.follower
            .post(attempt, self.follower.first_node(attempt))
    }

    fn classify<'a>(&self, attempt: u64, answer: &'a Answer) -> Reply<'a> {
        match answer.status {
            StatusCode::CREATED => {
                // Only sales are parsed (a few per drop); rejections only yield their code.
                if let Ok(order) = serde_json::from_slice::<Created>(&answer.body) {
                    self.follower.journal.order(order.id);
                }
                Reply::Ok
            }
            // A replay cannot happen on a first try with fresh keys; if it does, it is no sale.
            StatusCode::OK => Reply::Rejected(Cow::Borrowed("replayed")),
            status if status == StatusCode::ACCEPTED || follow::is_retryable(status) => {
                Reply::Later(self.follow_up(attempt, follow::read_post(answer)))
            }
            status => Reply::Rejected(api::error_code(status, &answer.body)),
        }
    }

    fn no_answer(&self, attempt: u64, kind: ErrorKind) -> Option<FollowUp> {
        Some(self.follow_up(attempt, PostRead::Retry(Retry::no_answer(kind))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ErrorKind;

    #[test]
    fn sales_are_counted_per_token_round_robin() {
        // Two tokens: attempts 0, 2, 4 are token 0's; 1, 3 token 1's.
        let outcomes = [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Rejected(0),
            Outcome::Failed(ErrorKind::Timeout),
        ];
        assert_eq!(tokens_over_limit(&outcomes, 2, 1, Some(1)), 1);
        assert_eq!(tokens_over_limit(&outcomes, 2, 1, Some(2)), 0);
        assert_eq!(tokens_over_limit(&outcomes, 2, 2, Some(3)), 1);
        assert_eq!(tokens_over_limit(&outcomes, 2, 1, None), 0);
    }
}
