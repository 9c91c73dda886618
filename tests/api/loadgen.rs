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

/// `stampede loadgen orders …` through the binary's own dispatch, which supplies `verify`
/// on the test's database.
async fn orders_run(app: &crate::helpers::TestApp, args: &[&str]) -> ExitCode {
    let line = ["stampede", "loadgen", "orders"].iter().chain(args);
    let cli = Cli::try_parse_from(line).expect("valid arguments");
    stampede::cli::run(cli, (*app.state.config).clone())
        .await
        .expect("the run completes")
}

backend_tests!(
    an_order_load_test_orders_with_a_coupon_and_points_every_time,
    |app| async move {
        let dir = std::env::temp_dir().join(unique("loadgen-orders"));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = app.buyers(5).await;
        let tokens_file = dir.join("tokens.txt");
        std::fs::write(&tokens_file, tokens.join("\n")).unwrap();
        let admin = app.admin_token().await;
        let tokens_path = tokens_file.display().to_string();
        let common = [
            "--target",
            &app.root,
            "--admin-token",
            &admin,
            "--tokens",
            &tokens_path,
            "--products",
            "3",
            "--points",
            "700",
        ];
        // Open loop: 20 orders/s for 2 s from 5 buyers, so 8 coupons each.
        let open_out = dir.join("open").display().to_string();
        let open: Vec<&str> = common
            .iter()
            .copied()
            .chain(["--duration", "2s", "--rate", "20", "--concurrency", "10"])
            .chain(["--out", &open_out])
            .collect();
        assert_eq!(orders_run(&app, &open).await, ExitCode::SUCCESS);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{open_out}/summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["scenario"], "orders");
        assert_eq!(int(&summary, "attempts"), 40);
        assert_eq!(int(&summary, "orders_per_buyer"), 8);
        let placed = int(&summary, "placed");
        assert_eq!(placed, 40, "every order placed: {summary}");
        assert_eq!(summary["error_rate"], 0.0);
        assert!(summary["orders_per_s"].as_f64().unwrap() > 0.0);
        assert!(summary["latency_ms"]["mean"].as_f64().unwrap() > 0.0);
        assert_eq!(summary["seed_002"]["orders_per_s"], 75.0);
        assert_eq!(summary["verify_clean"], true, "{summary}");
        assert_eq!(summary["verify"]["problems"], serde_json::json!([]));
        assert_eq!(
            int(&summary["orders_read_back"], "with_coupon_and_points"),
            40
        );

        // What the server holds, read independently of the load generator: every order a
        // coupon of its own, 3,000 won off and 700 points.
        let listed = expect(&app.get("/orders?page=1&size=100", Some(&admin)).await, 200).clone();
        let orders = listed["items"].as_array().unwrap();
        assert_eq!(orders.len() as i64, placed);
        let mut coupons = std::collections::HashSet::new();
        for order in orders {
            assert!(coupons.insert(int(order, "coupon_id")), "coupon used twice");
            assert_eq!(int(order, "discount"), 3_000, "{order}");
            assert_eq!(int(order, "points_used"), 700, "{order}");
        }
        // Each buyer: 8 orders, so 8 coupons held and 8 × 700 points held.
        for token in &tokens {
            let points = expect(&app.get("/me/points", Some(token)).await, 200).clone();
            assert_eq!(int(&points, "held"), 8 * 700, "{points}");
            let mine = expect(
                &app.get("/me/coupons?page=1&size=100", Some(token)).await,
                200,
            )
            .clone();
            let held = mine["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "held")
                .count();
            assert_eq!(held, 8, "{mine}");
        }

        // Closed loop: 3 users pausing 100 ms between orders for 1 s; they cannot use
        // more than the 3 × 11 coupons claimed for them.
        let closed_out = dir.join("closed").display().to_string();
        let closed: Vec<&str> = common
            .iter()
            .copied()
            .chain(["--duration", "1s", "--concurrency", "3", "--think", "100ms"])
            .chain(["--out", &closed_out])
            .collect();
        assert_eq!(orders_run(&app, &closed).await, ExitCode::SUCCESS);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{closed_out}/summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["rate_per_s"], serde_json::Value::Null);
        let placed = int(&summary, "placed");
        assert!((3..=33).contains(&placed), "{summary}");
        assert_eq!(placed, int(&summary, "attempts"));
        app.assert_verify_clean().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
);

#[test]
fn an_order_load_test_needs_a_duration_and_a_bound_on_its_orders() {
    let parses = |line: &str| {
        Cli::try_parse_from(
            ["stampede", "loadgen", "orders"]
                .into_iter()
                .chain(line.split_whitespace()),
        )
        .is_ok()
    };
    let base = "--target http://a:1 --admin-token t --tokens f --concurrency 10 --out o";
    assert!(parses(&format!("{base} --duration 10m --rate 75")));
    assert!(parses(&format!("{base} --duration 30s --think 13s")));
    assert!(!parses(&format!("{base} --rate 75")), "no duration");
    assert!(
        !parses(&format!("{base} --duration 10 --rate 75")),
        "no unit"
    );
    assert!(!parses(&format!(
        "{base} --duration 1s --orders-per-buyer 0"
    )));
}
