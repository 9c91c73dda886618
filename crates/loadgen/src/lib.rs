//! `stampede loadgen`: drives running Stampede servers over HTTP and reports throughput,
//! latency and, for a drop, whether anything was oversold (DESIGN §7, "Measured, not
//! claimed"). A client of the HTTP API like any other: it knows the API's wire format
//! (`api`), not the server's code. The `stampede` binary exposes [`LoadgenCommand`] as its
//! `loadgen` subcommand and hands it to [`run`].
//!
//! A scenario only says how to build attempt n and what an answer means
//! ([`runner::Scenario`]); everything else is shared: the flags (`args`), the closed/open
//! loop runner (`runner`, counting `outcome`s and showing `progress`), the analysis
//! (`stats`), `summary.json` (`summary`) and `report.html` (`report`, drawn by `svg`).
//! `drop` adds the setup, the follow-up of attempts its first answer did not decide
//! (`follow`: waiting-room tickets, retries) and the correctness check (`verdict`); `coupon`
//! does the same for a first-come coupon campaign; `orders` is seed 002's order load test,
//! sustained for a duration, whose ledger check the caller supplies ([`run_orders`]).
//!
//! Modules only import downwards: this file knows the scenarios, the scenarios know the
//! shared modules, and no module imports one that imports it.

mod api;
mod args;
mod browse;
mod coupon;
mod drop;
mod follow;
mod orders;
mod outcome;
mod progress;
mod report;
mod runner;
mod stats;
mod summary;
mod svg;
mod verdict;

pub use orders::{run as run_orders, OrdersArgs, Verified};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum LoadgenCommand {
    /// A limited-edition drop: create a product with --stock units, fire --attempts
    /// purchases at it from many buyers, then check that nothing was oversold.
    Drop(drop::DropArgs),
    /// A first-come coupon campaign: create one with --total coupons, fire --attempts claims
    /// from the buyers (round-robin, so buyers may claim twice), then check that exactly
    /// min(total, buyers) were issued and nobody got two.
    CouponBurst(coupon::CouponBurstArgs),
    /// Listing reads (no tokens needed).
    Browse(browse::BrowseArgs),
    /// GET /healthz: the trivial-endpoint ceiling, measured with the same client.
    Hello(browse::HelloArgs),
}

/// Runs one command to the end. The exit code is the run's judgement: failure when a drop or
/// a coupon burst was judged incorrect, or when no read succeeded; errors are runs that
/// could not be carried out (bad tokens file, setup refused, output not writable).
pub async fn run(command: LoadgenCommand) -> anyhow::Result<ExitCode> {
    match command {
        LoadgenCommand::Drop(args) => drop::run(args).await,
        LoadgenCommand::CouponBurst(args) => coupon::run(args).await,
        LoadgenCommand::Browse(args) => browse::run_browse(args).await,
        LoadgenCommand::Hello(args) => browse::run_hello(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: LoadgenCommand,
    }

    fn parse(args: &str) -> Result<LoadgenCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.split_whitespace()))
            .map(|c| c.command)
    }

    fn drop_line(attempts: &str, concurrency: &str, rate: &str, stock: &str) -> String {
        format!(
            "drop --target http://a:1 --target http://b:2 --admin-token t --tokens f \
             --stock {stock} --attempts {attempts} --concurrency {concurrency} --rate {rate} --out o"
        )
    }

    #[test]
    fn arguments_are_parsed_into_bounded_values() {
        let LoadgenCommand::Drop(args) = parse(&drop_line("10", "3", "250.5", "5")).unwrap() else {
            panic!("not a drop")
        };
        assert_eq!(args.load.targets.len(), 2);
        assert_eq!(args.load.rate, Some(250.5));
        assert_eq!(args.load.timeout_secs, 30);
        let bad = [
            ["0", "3", "1", "5"],
            ["10", "0", "1", "5"],
            ["10", "100001", "1", "5"],
            ["10", "3", "0", "5"],
            ["10", "3", "nan", "5"],
            ["10", "3", "1", "-1"],
        ];
        for [attempts, concurrency, rate, stock] in bad {
            let line = drop_line(attempts, concurrency, rate, stock);
            assert!(parse(&line).is_err(), "accepted {line}");
        }
    }

    #[test]
    fn a_coupon_burst_needs_a_total_and_attempts() {
        let line = "coupon-burst --target http://a:1 --admin-token t --tokens f --total 1000 \
                    --attempts 50000 --concurrency 200 --out o";
        assert!(matches!(parse(line), Ok(LoadgenCommand::CouponBurst(_))));
        assert!(parse(&line.replace("--total 1000", "--total 0")).is_err());
        assert!(parse(&line.replace("--attempts 50000", "--attempts 0")).is_err());
    }

    #[test]
    fn reads_need_no_tokens() {
        assert!(parse("hello --target http://a:1 --requests 5 --concurrency 2 --out o").is_ok());
        assert!(parse("browse --target http://a:1 --requests 5 --concurrency 2 --out o --path /api/v1/products").is_ok());
        assert!(parse(
            "browse --target http://a:1 --requests 5 --concurrency 2 --out o --path nope"
        )
        .is_err());
        assert!(parse("hello --target https://a:1 --requests 5 --concurrency 2 --out o").is_err());
    }
}
