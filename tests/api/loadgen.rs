//! The load generator against a real server: it runs a drop, checks the result itself and
//! writes its summary and report.

use crate::helpers::*;
use clap::Parser;
use stampede::cli::{Cli, Command, LoadgenCli};
use std::process::ExitCode;

async fn loadgen(args: &[&str]) -> ExitCode {
    let cli = Cli::try_parse_from(std::iter::once("stampede").chain(args.iter().copied()))
        .expect("valid arguments");
    let Some(Command::Loadgen(LoadgenCli::Http(command))) = cli.command else {
        panic!("not a loadgen command")
    };
    stampede_loadgen::run(command)
        .await
        .expect("the run completes")
}

backend_tests!(a_drop_run_checks_itself_and_reports, |app| async move {
    let dir = std::env::temp_dir().join(unique("loadgen"));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, app.buyers(200).await.join("\n")).unwrap();
    let out = dir.join("out");
    let admin = app.admin_token().await;
    let (tokens, out) = (tokens.display().to_string(), out.display().to_string());
    let args = [
        "loadgen",
        "drop",
        "--target",
        &app.root,
        "--admin-token",
        &admin,
        "--tokens",
        &tokens,
        "--stock",
        "25",
        "--attempts",
        "400",
        "--concurrency",
        "50",
        "--out",
        &out,
    ];
    assert_eq!(
        loadgen(&args).await,
        ExitCode::SUCCESS,
        "the drop was judged correct"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{out}/summary.json")).unwrap())
            .unwrap();
    assert_eq!(int(&summary, "attempts"), 400);
    assert_eq!(int(&summary, "sold"), 25);
    assert_eq!(int(&summary, "oversold"), 0);
    assert_eq!(summary["rejected_by_code"]["out_of_stock"], 375);
    for field in ["p50", "p95", "p99", "max"] {
        assert!(
            summary["latency_ms"][field].as_f64().is_some(),
            "latency_ms.{field} in {summary}"
        );
    }
    assert!(summary["throughput_per_s"].as_f64().unwrap() > 0.0);
    let report = std::fs::read_to_string(format!("{out}/report.html")).unwrap();
    assert!(report.contains("<svg"), "charts are inline SVG");
    assert!(
        !report.contains("<script src=") && !report.contains("<link"),
        "self-contained"
    );
    app.assert_verify_clean().await;
    let _ = std::fs::remove_dir_all(&dir);
});

/// The load generator keeps its own copy of the API's limits (it is a client of the API and
/// does not depend on the server crate): its flags take the largest value the API accepts,
/// and refuse one more.
#[test]
fn the_loadgen_flags_mirror_the_api_limits() {
    use stampede::domain::coupon::MAX_COUPON_QUANTITY;
    use stampede::domain::values::{MAX_QUANTITY, MAX_WON};
    let drop = "drop --target http://a:1 --admin-token t --tokens f --stock 1 --quantity 1 \
                --max-per-user 1 --price 1 --attempts 1 --concurrency 1 --out o";
    let burst = "coupon-burst --target http://a:1 --admin-token t --tokens f --total 1 \
                 --attempts 1 --concurrency 1 --out o";
    let parses = |line: &str, flag: &str, value: i64| {
        let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let at = words
            .iter()
            .position(|w| w == flag)
            .expect("the flag is in the line");
        words[at + 1] = value.to_string();
        let args = ["stampede", "loadgen"]
            .map(str::to_owned)
            .into_iter()
            .chain(words);
        Cli::try_parse_from(args).is_ok()
    };
    for (line, flag, limit) in [
        (drop, "--stock", MAX_QUANTITY),
        (drop, "--quantity", MAX_QUANTITY),
        (drop, "--max-per-user", MAX_QUANTITY),
        (drop, "--price", MAX_WON),
        (burst, "--total", MAX_COUPON_QUANTITY),
    ] {
        assert!(parses(line, flag, limit), "{flag} {limit} is refused");
        assert!(
            !parses(line, flag, limit + 1),
            "{flag} {} is accepted",
            limit + 1
        );
    }
}

backend_tests!(
    the_settlement_batch_fills_settles_and_reports,
    |app| async move {
        let dir = std::env::temp_dir().join(unique("settlement-bench"));
        let out = dir.display().to_string();
        let args = [
            "stampede",
            "loadgen",
            "settlement",
            "--lines",
            "3000",
            "--partners",
            "7",
            "--out",
            &out,
        ];
        let cli = Cli::try_parse_from(args).expect("valid arguments");
        let config = (*app.state.config).clone();
        let code = stampede::cli::run(cli, config)
            .await
            .expect("the run completes");
        assert_eq!(code, ExitCode::SUCCESS);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["scenario"], "settlement");
        assert_eq!(
            (int(&summary, "lines"), int(&summary, "settled_lines")),
            (3000, 3000)
        );
        assert_eq!(int(&summary, "statements"), 7);
        assert!(
            summary["settlement_ms"].as_f64().unwrap() > 0.0,
            "{summary}"
        );
        assert_eq!(summary["bare_aggregate_ms"].as_array().unwrap().len(), 2);
        // The statements are the sums of their lines (the filled orders have no items or
        // stock behind them, so the rest of verify does not apply to a benchmark store).
        let audit = app.state.store.settlement_audit().await.unwrap();
        assert!(
            audit.mismatches.is_empty() && audit.settled_twice.is_empty(),
            "{audit:?}"
        );
        // A store with confirmed purchases is refused: its day would not be the batch's alone.
        let again = Cli::try_parse_from(args).unwrap();
        let refused = stampede::cli::run(again, (*app.state.config).clone()).await;
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("without confirmed purchases"));
        let _ = std::fs::remove_dir_all(&dir);
    }
);
