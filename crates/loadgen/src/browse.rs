//! Read scenarios: `browse` (catalogue listing) and `hello` (`GET /healthz`, the
//! trivial-endpoint ceiling that real endpoints are compared against, measured with the
//! same client and runner). Both are one GET per attempt and need no tokens.

use crate::args::LoadArgs;
use crate::report::{self, Page};
use crate::runner::{self, Answer, Reply, Scenario, MAX_ATTEMPTS};
use crate::{api, stats, summary};
use reqwest::{Client, RequestBuilder, Url};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;

const DEFAULT_BROWSE_PATH: &str = "/api/v1/products?page=1&size=40";
const HELLO_PATH: &str = "/healthz";

#[derive(clap::Args, Debug)]
pub struct BrowseArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Requests to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_ATTEMPTS))]
    requests: u64,
    /// Path and query to read on every target.
    #[arg(long, default_value = DEFAULT_BROWSE_PATH, value_parser = parse_path)]
    path: String,
}

#[derive(clap::Args, Debug)]
pub struct HelloArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Requests to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_ATTEMPTS))]
    requests: u64,
}

pub async fn run_browse(args: BrowseArgs) -> anyhow::Result<ExitCode> {
    reads(&args.load, args.requests, "browse", &args.path).await
}

pub async fn run_hello(args: HelloArgs) -> anyhow::Result<ExitCode> {
    reads(&args.load, args.requests, "hello", HELLO_PATH).await
}

#[derive(Serialize)]
struct ReadFacts<'a> {
    /// 2xx answers.
    ok: u64,
    path: &'a str,
}

async fn reads(
    load: &LoadArgs,
    requests: u64,
    scenario: &'static str,
    path: &str,
) -> anyhow::Result<ExitCode> {
    let info = load.info(scenario);
    let get = Arc::new(Get {
        client: load.client()?,
        urls: load.endpoints(path)?,
    });
    let recording = runner::run(get, load.plan(requests), scenario, "ok").await?;
    let analysis = stats::analyse(&recording);
    eprintln!("{}", summary::final_line(&info, "ok", &analysis));
    let html = report::render(&Page {
        run: &info,
        ok_label: "ok",
        judgement: None,
        facts: vec![("path", path.to_owned())],
        analysis: &analysis,
    });
    let facts = ReadFacts {
        ok: analysis.tally.ok,
        path,
    };
    let (json_path, html_path) =
        summary::write_outputs(&load.out, &summary::summary(&info, &analysis, facts), &html)?;
    println!(
        "summary: {}\nreport: {}",
        json_path.display(),
        html_path.display()
    );
    // A read benchmark with no successful read measured nothing: say so in the exit code.
    if analysis.tally.ok == 0 {
        eprintln!(
            "{scenario}: no request succeeded; see {}",
            html_path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One GET per attempt, round-robin over the targets.
struct Get {
    client: Client,
    urls: Vec<Url>,
}

impl Scenario for Get {
    fn request(&self, attempt: u64) -> RequestBuilder {
        self.client
            .get(self.urls[(attempt % self.urls.len() as u64) as usize].clone())
    }

    fn classify<'a>(&self, _attempt: u64, answer: &'a Answer) -> Reply<'a> {
        if answer.status.is_success() {
            Reply::Ok
        } else {
            Reply::Rejected(api::error_code(answer.status, &answer.body))
        }
    }
}

fn parse_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') && !raw.contains(char::is_whitespace) {
        Ok(raw.to_owned())
    } else {
        Err("expected a path starting with / (a query may follow), e.g. /api/v1/products?page=1&size=40".into())
    }
}
