//! `stampede loadgen drop`: a limited-edition drop. Creates a partner and a product with
//! `--stock` units, fires `--attempts` purchases at it from the buyers' tokens (round-robin,
//! one fresh Idempotency-Key each), then reads the product and the admin order listing back
//! and judges whether the server sold exactly what it had.

use crate::api::{self, read_tokens, Admin, Created, StockState, MAX_QUANTITY, MAX_WON};
use crate::args::LoadArgs;
use crate::outcome::Outcome;
use crate::report::{self, Judgement, Page};
use crate::runner::{self, Reply, Scenario, MAX_ATTEMPTS};
use crate::verdict::{self, Expected, Ledger, Seen, Verdict};
use crate::{stats, summary};
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

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
}

/// What summary.json adds for a drop, right after `attempts`.
#[derive(Serialize)]
struct DropFacts<'a> {
    /// 201 answers.
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
        client,
        urls: args.load.endpoints("/api/v1/orders")?,
        body: order_body(product_id, args.quantity)?,
        key_prefix: format!("lg-{run_id}"),
        tokens,
        sold: Mutex::new(Vec::new()),
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
    let (json_path, html_path) = write(
        &args,
        &info,
        &analysis,
        &checked,
        product_id,
        scenario.tokens.len(),
    )?;
    print_verdict(&checked.verdict);
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
    let seen = Seen {
        attempts: analysis.tally.attempts,
        sold: analysis.tally.ok,
        out_of_stock: analysis.tally.rejected_with("out_of_stock"),
        errors: analysis.tally.errors,
        tokens_over_limit: tokens_over_limit(
            outcomes,
            scenario.tokens.len(),
            args.quantity,
            args.max_per_user,
        ),
    };
    let acknowledged = scenario
        .sold
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
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

struct DropScenario {
    client: Client,
    /// `POST /api/v1/orders` on each target, parsed once.
    urls: Vec<Url>,
    tokens: Vec<HeaderValue>,
    /// The same for every attempt: serialised once, shared by reference count.
    body: Bytes,
    /// Unique per run, so keys never meet those of an earlier run with the same buyers.
    key_prefix: String,
    /// Order ids of the 201 answers, for the cross-check with the admin listing.
    sold: Mutex<Vec<i64>>,
}

impl Scenario for DropScenario {
    fn request(&self, attempt: u64) -> RequestBuilder {
        let url = &self.urls[(attempt % self.urls.len() as u64) as usize];
        let token = &self.tokens[(attempt % self.tokens.len() as u64) as usize];
        self.client
            .post(url.clone())
            .header(AUTHORIZATION, token.clone())
            .header(CONTENT_TYPE, JSON)
            .header(IDEMPOTENCY_KEY, format!("{}-{attempt}", self.key_prefix))
            .body(self.body.clone())
    }

    fn classify<'a>(&self, _attempt: u64, status: StatusCode, body: &'a [u8]) -> Reply<'a> {
        match status {
            StatusCode::CREATED => {
                // Only sales are parsed (a few per drop); rejections only yield their code.
                if let Ok(order) = serde_json::from_slice::<Created>(body) {
                    self.sold
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(order.id);
                }
                Reply::Ok
            }
            // A replay cannot happen with fresh keys; if it does, it is no sale.
            StatusCode::OK => Reply::Rejected(Cow::Borrowed("replayed")),
            _ => Reply::Rejected(api::error_code(status, body)),
        }
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
