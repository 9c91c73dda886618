//! `stampede loadgen coupon-burst`: a first-come coupon campaign (seed 002's "1,000
//! coupons, 50,000 requests"). Creates a campaign of `--total` coupons, fires `--attempts`
//! claims — attempt n is buyer n mod buyers, so attempts beyond the number of buyers claim
//! again — then reads the campaign back and judges: issued = min(total, distinct buyers),
//! nobody twice, and the server's count equal to the 201 answers.
//!
//! Runner, summary.json and report.html are the ones every scenario shares.

use crate::api::{self, read_tokens, Admin, Created, MAX_COUPON_QUANTITY};
use crate::args::LoadArgs;
use crate::outcome::Outcome;
use crate::report::{self, Judgement, Page};
use crate::runner::{self, Answer, Reply, Scenario, MAX_ATTEMPTS};
use crate::{stats, summary};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct CouponBurstArgs {
    #[command(flatten)]
    pub(super) load: LoadArgs,
    /// An admin's access token: creates the campaign, reads it back.
    #[arg(long, env = "STAMPEDE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Buyers' access tokens, one per line (`stampede admin provision-buyers`).
    #[arg(long, value_name = "FILE")]
    tokens: PathBuf,
    /// Coupons of the campaign created for the burst.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=MAX_COUPON_QUANTITY))]
    total: i64,
    /// Claims to fire; buyers are used round-robin, so more attempts than buyers means
    /// buyers claiming again.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_ATTEMPTS))]
    attempts: u64,
}

/// What summary.json adds for a coupon burst, right after `attempts`.
#[derive(Serialize)]
struct BurstFacts<'a> {
    /// 201 answers.
    issued: u64,
    correct: bool,
    verdict: &'a str,
    problems: &'a [String],
    notes: &'a [String],
    total: i64,
    buyers: usize,
    /// Buyers that claimed at least once: min(buyers, attempts).
    buyers_claiming: u64,
    expected_issued: i64,
    /// Buyers answered 201 more than once (0 when correct).
    issued_twice: u64,
    campaign_id: i64,
    /// `issued` of the campaign read back after the run.
    campaign_issued: Option<i64>,
}

#[derive(Deserialize)]
struct CampaignState {
    issued: i64,
}

/// The judgement of a burst, from what the client saw and what the server reads back.
#[derive(Debug, PartialEq)]
struct Verdict {
    correct: bool,
    text: String,
    problems: Vec<String>,
    notes: Vec<String>,
}

/// What the burst found, beside the client's own tally.
struct Checked {
    buyers: usize,
    /// Buyers that claimed at least once: min(buyers, attempts).
    buyers_claiming: u64,
    expected: i64,
    issued_twice: u64,
    campaign_id: i64,
    /// The campaign's `issued`, read back from the server.
    read_back: Result<i64, String>,
    verdict: Verdict,
}

pub async fn run(args: CouponBurstArgs) -> anyhow::Result<ExitCode> {
    let tokens = read_tokens(&args.tokens)?;
    let client = args.load.client()?;
    let admin = Admin::new(
        client.clone(),
        args.load.targets[0].clone(),
        &args.admin_token,
    )?;
    let campaign_id = create_campaign(&admin, args.total).await?;
    let info = args.load.info("coupon-burst");
    let scenario = Arc::new(Burst {
        client,
        urls: args
            .load
            .endpoints(&format!("/api/v1/coupons/{campaign_id}/issue"))?,
        tokens,
    });
    let recording = runner::run(
        scenario.clone(),
        args.load.plan(args.attempts),
        "coupon-burst",
        "issued",
    )
    .await?;
    let analysis = stats::analyse(&recording);
    eprintln!("{}", summary::final_line(&info, "issued", &analysis));
    let buyers = scenario.tokens.len();
    let issued_twice = issued_twice(&recording.outcomes, buyers);
    let checked = check(&args, &admin, campaign_id, buyers, issued_twice, &analysis).await;
    write_reports(&args, &info, &analysis, &checked)?;
    Ok(if checked.verdict.correct {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A fixed-discount campaign of `total` coupons, named after this run.
async fn create_campaign(admin: &Admin, total: i64) -> anyhow::Result<i64> {
    let run_id = format!("{:016x}", rand::random::<u64>());
    let campaign = serde_json::json!({
        "name": format!("loadgen coupon burst {run_id}"),
        "discount_type": "fixed",
        "discount_value": 1_000,
        "total_quantity": total,
    });
    Ok(admin
        .post_json::<Created>("/api/v1/coupons", &campaign, "creating the campaign")
        .await?
        .id)
}

/// Reads the campaign back and judges the burst.
async fn check(
    args: &CouponBurstArgs,
    admin: &Admin,
    campaign_id: i64,
    buyers: usize,
    issued_twice: u64,
    analysis: &stats::Analysis,
) -> Checked {
    let buyers_claiming = args.attempts.min(buyers as u64);
    let expected = args.total.min(buyers_claiming as i64);
    let read_back = admin
        .get_json::<CampaignState>(
            &format!("/api/v1/coupons/{campaign_id}"),
            "reading the campaign back",
        )
        .await
        .map(|c| c.issued)
        .map_err(|e| format!("{e:#}"));
    let verdict = judge(
        args.total,
        expected,
        analysis.tally.ok,
        analysis.tally.errors,
        issued_twice,
        &read_back,
    );
    Checked {
        buyers,
        buyers_claiming,
        expected,
        issued_twice,
        campaign_id,
        read_back,
        verdict,
    }
}

/// summary.json and report.html, and the verdict on standard output.
fn write_reports(
    args: &CouponBurstArgs,
    info: &summary::RunInfo,
    analysis: &stats::Analysis,
    checked: &Checked,
) -> anyhow::Result<()> {
    let verdict = &checked.verdict;
    let facts = BurstFacts {
        issued: analysis.tally.ok,
        correct: verdict.correct,
        verdict: &verdict.text,
        problems: &verdict.problems,
        notes: &verdict.notes,
        total: args.total,
        buyers: checked.buyers,
        buyers_claiming: checked.buyers_claiming,
        expected_issued: checked.expected,
        issued_twice: checked.issued_twice,
        campaign_id: checked.campaign_id,
        campaign_issued: checked.read_back.as_ref().ok().copied(),
    };
    let html = report::render(&Page {
        run: info,
        ok_label: "issued",
        judgement: Some(Judgement {
            correct: verdict.correct,
            text: &verdict.text,
            notes: &verdict.notes,
        }),
        facts: vec![
            ("coupons", args.total.to_string()),
            ("buyers (tokens)", checked.buyers.to_string()),
            ("expected issued", checked.expected.to_string()),
            ("issued twice", checked.issued_twice.to_string()),
            ("campaign id", checked.campaign_id.to_string()),
        ],
        analysis,
    });
    let (json_path, html_path) = summary::write_outputs(
        &args.load.out,
        &summary::summary(info, analysis, facts),
        &html,
    )?;
    println!("{}", verdict.text);
    for note in &verdict.notes {
        println!("note: {note}");
    }
    println!(
        "summary: {}\nreport: {}",
        json_path.display(),
        html_path.display()
    );
    Ok(())
}

/// Buyers answered 201 more than once. Attempt n used token n % tokens.
fn issued_twice(outcomes: &[Outcome], tokens: usize) -> u64 {
    let mut wins = vec![0u32; tokens];
    for (n, _) in outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == Outcome::Ok)
    {
        wins[n % tokens] += 1;
    }
    wins.iter().filter(|&&w| w > 1).count() as u64
}

/// `ok` 201 answers and `errors` attempts without an answer (any of which may have been
/// issued); `read_back` is the campaign's `issued` after the run.
fn judge(
    total: i64,
    expected: i64,
    ok: u64,
    errors: u64,
    issued_twice: u64,
    read_back: &Result<i64, String>,
) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let ok = ok as i64;
    if issued_twice > 0 {
        problems.push(format!("{issued_twice} buyer(s) were issued two coupons"));
    }
    if ok > total {
        problems.push(format!("{ok} coupons answered 201 of a total of {total}"));
    }
    match read_back {
        Ok(issued) if *issued > total => {
            problems.push(format!("the campaign issued {issued} of a total of {total}"));
        }
        Ok(issued) if *issued != ok && errors == 0 => problems.push(format!(
            "the campaign counts {issued} issued but {ok} claims were answered 201"
        )),
        Ok(issued) if *issued != ok => notes.push(format!(
            "the campaign counts {issued} issued, {ok} answered 201: {errors} claim(s) got no answer"
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("could not read the campaign back: {e}")),
    }
    if ok != expected {
        let line = format!("{ok} coupons issued, expected {expected}");
        if errors == 0 {
            problems.push(line);
        } else {
            notes.push(format!("{line} ({errors} claim(s) got no answer)"));
        }
    }
    let correct = problems.is_empty();
    let text = if correct {
        format!("correct: {ok} of {total} coupons issued, nobody twice")
    } else {
        format!("WRONG: {}", problems.join("; "))
    };
    Verdict {
        correct,
        text,
        problems,
        notes,
    }
}

struct Burst {
    client: Client,
    /// `POST /api/v1/coupons/{id}/issue` on each target, parsed once.
    urls: Vec<Url>,
    tokens: Vec<HeaderValue>,
}

impl Scenario for Burst {
    fn request(&self, attempt: u64) -> RequestBuilder {
        let url = &self.urls[(attempt % self.urls.len() as u64) as usize];
        let token = &self.tokens[(attempt % self.tokens.len() as u64) as usize];
        self.client
            .post(url.clone())
            .header(AUTHORIZATION, token.clone())
    }

    fn classify<'a>(&self, _attempt: u64, answer: &'a Answer) -> Reply<'a> {
        if answer.status == StatusCode::CREATED {
            Reply::Ok
        } else {
            Reply::Rejected(api::error_code(answer.status, &answer.body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wins_are_counted_per_token_round_robin() {
        let outcomes = [Outcome::Ok, Outcome::Ok, Outcome::Ok, Outcome::Rejected(0)];
        assert_eq!(
            issued_twice(&outcomes, 2),
            1,
            "token 0 won attempts 0 and 2"
        );
        assert_eq!(issued_twice(&outcomes, 3), 0);
    }

    #[test]
    fn a_burst_is_judged_on_count_duplicates_and_read_back() {
        assert!(judge(10, 10, 10, 0, 0, &Ok(10)).correct);
        let twice = judge(10, 10, 10, 0, 1, &Ok(10));
        assert!(
            !twice.correct && twice.text.contains("two coupons"),
            "{twice:?}"
        );
        let over = judge(10, 10, 11, 0, 0, &Ok(11));
        assert!(!over.correct, "{over:?}");
        let lost = judge(10, 10, 10, 0, 0, &Ok(9));
        assert!(!lost.correct, "{lost:?}");
        let short = judge(10, 10, 9, 0, 0, &Ok(9));
        assert!(!short.correct, "{short:?}");
        // Without an answer a claim may or may not have gone through: a note, not a fault.
        let unanswered = judge(10, 10, 9, 1, 0, &Ok(10));
        assert!(unanswered.correct, "{unanswered:?}");
        assert_eq!(unanswered.notes.len(), 2);
        assert!(!judge(10, 10, 10, 0, 0, &Err("down".into())).correct);
    }
}
