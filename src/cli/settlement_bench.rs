//! `stampede loadgen settlement --lines N [--partners P] --out DIR` (issue 10, seed 003's
//! 1M-row batch): fills the configured store with N confirmed purchases over P partners in
//! yesterday's business day, then times, in the same run, the bare aggregate settlement is
//! built on (`INSERT … SELECT … GROUP BY` into a scratch table), the settlement of that day
//! (statements, lines, events, in one transaction), and the bare aggregate again; writes
//! `summary.json`. It lives here and not in `crates/loadgen`, which talks only HTTP: no
//! endpoint makes a million confirmed purchases in seconds, so this fills the store
//! directly, as `admin provision-buyers` does. Point it at a scratch database: the orders
//! it makes have no items or stock behind them.

use crate::config::Config;
use crate::store::SettlementDay;
use crate::wiring::OperatorApp;
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct SettlementBenchArgs {
    /// Confirmed partner orders to settle (one line each).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..=100_000_000))]
    lines: i64,
    /// Partners they are spread over, round-robin.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    partners: i64,
    /// Where `summary.json` goes (created if missing).
    #[arg(long)]
    out: PathBuf,
}

pub(super) async fn run(args: SettlementBenchArgs, config: Config) -> anyhow::Result<()> {
    let operator = OperatorApp::open(config).await?;
    let outcome = bench(&args, &operator).await;
    operator.close().await;
    outcome
}

async fn bench(args: &SettlementBenchArgs, operator: &OperatorApp) -> anyhow::Result<()> {
    let store = operator.store();
    let settlement = &operator.app.settlement;
    anyhow::ensure!(
        store.first_entry().await?.is_none(),
        "loadgen settlement needs a store without confirmed purchases (point \
         STAMPEDE_DATABASE_URL at a fresh database): its day must hold only its own lines"
    );
    let date = settlement.yesterday()?;
    let (from, to) = settlement.calendar.bounds(date)?;
    let day = SettlementDay { date, from, to };
    let now = settlement.clock.now();
    let tag = format!("bench-{}", now.millis());

    eprintln!(
        "filling {} lines over {} partners on {date}…",
        args.lines, args.partners
    );
    let started = Instant::now();
    store
        .fill_confirmed_lines(&tag, args.partners, args.lines, &day, now)
        .await?;
    let fill_ms = started.elapsed().as_secs_f64() * 1000.0;

    let (bare_before_ms, groups) = bare(operator, &day).await?;
    let started = Instant::now();
    let settled = settlement.settle_day(date).await?;
    let settlement_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (bare_after_ms, _) = bare(operator, &day).await?;

    let settled_lines: i64 = settled.statements.iter().map(|s| s.line_count).sum();
    anyhow::ensure!(
        settled_lines == args.lines && i64::try_from(settled.statements.len())? == groups,
        "settled {settled_lines} lines on {} statements, expected {} lines on {groups}",
        settled.statements.len(),
        args.lines
    );
    let bare_ms = bare_before_ms.min(bare_after_ms);
    let summary = json!({
        "scenario": "settlement",
        "backend": store.backend(),
        "lines": args.lines,
        "partners": args.partners,
        "business_date": date.to_string(),
        "fill_ms": round(fill_ms),
        "bare_aggregate_ms": [round(bare_before_ms), round(bare_after_ms)],
        "settlement_ms": round(settlement_ms),
        "settlement_over_bare": round(settlement_ms / bare_ms),
        "statements": settled.statements.len(),
        "settled_lines": settled_lines,
        "at": now.to_rfc3339(),
    });
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("{}", path.display()))?;
    println!("{summary:#}");
    Ok(())
}

/// Times one bare aggregate; returns the milliseconds and the groups it made.
async fn bare(operator: &OperatorApp, day: &SettlementDay) -> anyhow::Result<(f64, i64)> {
    let started = Instant::now();
    let groups = operator.store().bare_settlement_aggregate(day).await?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, groups))
}

fn round(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}
