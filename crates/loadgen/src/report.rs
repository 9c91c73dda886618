//! `report.html`: one self-contained page per run (inline CSS and SVG, no scripts, no
//! links), with throughput over time, latency over time and the latency distribution.

use crate::stats::{Analysis, Bucket};
use crate::summary::{ms, RunInfo};
use crate::svg::{self, esc, Series, TimeAxis};

const OK_COLOR: &str = "#2e8b57";
const REJECTED_COLOR: &str = "#e0a100";
const ERROR_COLOR: &str = "#c0392b";

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1000px;color:#222}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{padding:10px 14px;border-radius:4px;font-weight:bold}\
.ok{background:#e6f4ea;border:1px solid #2e8b57}.bad{background:#fdecea;border:1px solid #c0392b}\
.muted{color:#666;font-size:13px}.charts svg{max-width:100%;height:auto}";

/// A drop's judgement, shown at the top of its report.
pub struct Judgement<'a> {
    pub correct: bool,
    pub text: &'a str,
    pub notes: &'a [String],
}

pub struct Page<'a> {
    pub run: &'a RunInfo,
    /// What a success is called: `sold` for a drop, `ok` for reads.
    pub ok_label: &'static str,
    pub judgement: Option<Judgement<'a>>,
    /// Scenario figures shown under the run's own (stock, product, path…).
    pub facts: Vec<(&'static str, String)>,
    pub analysis: &'a Analysis,
}

pub fn render(page: &Page) -> String {
    let title = format!("Stampede loadgen: {}", page.run.scenario);
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    html += &header(page.run);
    if let Some(j) = &page.judgement {
        html += &judgement(j);
    }
    html += &figures(page);
    html += &charts(page);
    html += &answers(page);
    html + "</body></html>\n"
}

fn header(run: &RunInfo) -> String {
    // Targets without their scheme: the report references no URL at all.
    let targets: Vec<String> = run
        .targets
        .iter()
        .map(|t| esc(t.trim_start_matches("http://")))
        .collect();
    let pace = match run.rate_per_s {
        Some(rate) => format!(
            "open loop at {rate} attempts/s, at most {} in flight",
            run.concurrency
        ),
        None => format!("closed loop, {} in flight", run.concurrency),
    };
    format!(
        "<p class=\"muted\">started {} · {} · targets {} · timeout {} s</p>\n",
        esc(&run.started_at),
        pace,
        targets.join(", "),
        run.timeout_secs
    )
}

fn judgement(j: &Judgement) -> String {
    let class = if j.correct { "ok" } else { "bad" };
    let mut out = format!("<p class=\"verdict {class}\">{}</p>\n", esc(j.text));
    if !j.notes.is_empty() {
        out += "<ul class=\"muted\">";
        for note in j.notes {
            out += &format!("<li>{}</li>", esc(note));
        }
        out += "</ul>\n";
    }
    out
}

fn row(label: &str, value: &str) -> String {
    format!(
        "<tr><th>{}</th><td class=\"n\">{}</td></tr>",
        esc(label),
        esc(value)
    )
}

fn figures(page: &Page) -> String {
    let a = page.analysis;
    let t = &a.tally;
    let mut rows = vec![
        row("attempts", &t.attempts.to_string()),
        row(page.ok_label, &t.ok.to_string()),
        row("rejected", &t.rejected.to_string()),
        row(
            "errors (no answer)",
            &format!("{} ({} dropped)", t.errors, t.dropped),
        ),
        row("duration", &format!("{:.3} s", a.duration_s)),
        row(
            "throughput",
            &format!("{:.0} answers/s", a.throughput_per_s),
        ),
    ];
    rows.extend(page.facts.iter().map(|(k, v)| row(k, v)));
    format!("<h2>Figures</h2>\n<table>{}</table>\n", rows.join(""))
}

fn charts(page: &Page) -> String {
    let a = page.analysis;
    let axis = TimeAxis {
        bucket_s: f64::from(a.bucket_ms) / 1000.0,
        span_s: a.duration_s,
    };
    format!(
        "<div class=\"charts\">\n\
         <h2>Throughput over time</h2>\n\
         <p class=\"muted\">finished attempts per second in {} ms buckets, by outcome</p>\n{}\n\
         <h2>Latency over time</h2>\n\
         <p class=\"muted\">p50 and p99 of the answers finishing in each bucket</p>\n{}\n\
         <h2>Latency distribution</h2>\n\
         <p class=\"muted\">{} answers; errors without an answer are not included</p>\n{}\n</div>\n{}",
        a.bucket_ms,
        throughput_chart(a, axis, page.ok_label),
        latency_chart(a, axis),
        a.latency.count,
        histogram_chart(a),
        percentile_table(a)
    )
}

fn throughput_chart(a: &Analysis, axis: TimeAxis, ok_label: &str) -> String {
    // Rates, not counts: the last bucket is usually cut short by the end of the run.
    let per_s = |f: fn(&Bucket) -> u32| {
        a.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| f64::from(f(b)) / axis.width(i))
            .collect()
    };
    let series = [
        Series {
            name: ok_label,
            color: OK_COLOR,
            values: per_s(|b| b.ok),
        },
        Series {
            name: "rejected",
            color: REJECTED_COLOR,
            values: per_s(|b| b.rejected),
        },
        Series {
            name: "errors",
            color: ERROR_COLOR,
            values: per_s(|b| b.errors),
        },
    ];
    svg::stacked_bars("attempts per second", axis, &series)
}

fn latency_chart(a: &Analysis, axis: TimeAxis) -> String {
    // A bucket without answers has no latency: a gap, not a zero.
    let at = |f: fn(&Bucket) -> u32| {
        let value = |b: &Bucket| {
            if b.ok + b.rejected == 0 {
                f64::NAN
            } else {
                ms(f(b))
            }
        };
        a.buckets.iter().map(value).collect()
    };
    let series = [
        Series {
            name: "p50",
            color: "#4a78b5",
            values: at(|b| b.p50_us),
        },
        Series {
            name: "p99",
            color: ERROR_COLOR,
            values: at(|b| b.p99_us),
        },
    ];
    svg::lines("latency (ms)", axis, &series, svg::fmt_count)
}

fn histogram_chart(a: &Analysis) -> String {
    let l = &a.latency;
    if l.count == 0 {
        return svg::log_histogram(&a.histogram, &[]);
    }
    let p50 = format!("p50 {}", svg::fmt_us(f64::from(l.p50)));
    let p99 = format!("p99 {}", svg::fmt_us(f64::from(l.p99)));
    svg::log_histogram(&a.histogram, &[(&p50, l.p50), (&p99, l.p99)])
}

fn percentile_table(a: &Analysis) -> String {
    let l = &a.latency;
    let cells = [
        ("min", l.min),
        ("p50", l.p50),
        ("p90", l.p90),
        ("p95", l.p95),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ];
    let head: String = cells.iter().map(|(k, _)| format!("<th>{k}</th>")).collect();
    let body: String = cells
        .iter()
        .map(|(_, us)| format!("<td class=\"n\">{:.3}</td>", ms(*us)))
        .collect();
    format!("<table><tr><th>ms</th>{head}<th>mean</th></tr><tr><th>latency</th>{body}<td class=\"n\">{:.3}</td></tr></table>\n", l.mean / 1000.0)
}

fn answers(page: &Page) -> String {
    let t = &page.analysis.tally;
    let mut rows = vec![format!(
        "<tr><td>{}</td><td>success</td><td class=\"n\">{}</td></tr>",
        esc(page.ok_label),
        t.ok
    )];
    for (code, n) in &t.rejected_by_code {
        rows.push(format!(
            "<tr><td>{}</td><td>rejected</td><td class=\"n\">{n}</td></tr>",
            esc(code)
        ));
    }
    for (kind, n) in &t.errors_by_kind {
        rows.push(format!(
            "<tr><td>{}</td><td>error</td><td class=\"n\">{n}</td></tr>",
            esc(kind)
        ));
    }
    format!(
        "<h2>Answers</h2>\n<table><tr><th>code</th><th>kind</th><th>count</th></tr>{}</table>\n",
        rows.join("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorKind, Outcome};
    use crate::runner::Recording;
    use crate::stats::analyse;
    use std::time::Duration;

    fn page_html(judgement: Option<Judgement>) -> String {
        let rec = Recording {
            outcomes: vec![
                Outcome::Ok,
                Outcome::Rejected(0),
                Outcome::Rejected(1),
                Outcome::Failed(ErrorKind::Timeout),
            ],
            latency_us: vec![900, 1_800, 25_000, 0],
            finish_ms: vec![20, 120, 250, 300],
            codes: vec!["out_of_stock".into(), "<odd>".into()],
            duration: Duration::from_millis(320),
        };
        let analysis = analyse(&rec);
        let run = RunInfo {
            scenario: "drop",
            started_at: "2025-01-01T00:00:00Z".into(),
            targets: vec!["http://127.0.0.1:18181".into()],
            concurrency: 10,
            rate_per_s: Some(500.0),
            timeout_secs: 30,
        };
        render(&Page {
            run: &run,
            ok_label: "sold",
            judgement,
            facts: vec![("stock", "1".into())],
            analysis: &analysis,
        })
    }

    #[test]
    fn report_has_three_svg_charts_and_the_percentiles() {
        let html = page_html(None);
        assert_eq!(html.matches("<svg").count(), 3);
        assert_eq!(html.matches("</svg>").count(), 3);
        assert!(html.contains("<th>p99</th>"));
        assert!(html.contains("out_of_stock"));
        assert!(html.contains("&lt;odd&gt;"), "codes are escaped");
        assert!(html.contains("open loop at 500 attempts/s"));
    }

    #[test]
    fn report_is_self_contained() {
        let html = page_html(None).to_lowercase();
        for needle in [
            "<script", "<link", "src=", "href=", "http://", "https://", "@import", "url(",
        ] {
            assert!(!html.contains(needle), "report contains {needle}");
        }
    }

    #[test]
    fn the_verdict_is_shown_with_its_notes() {
        let notes = vec!["2 attempts got no answer".to_owned()];
        let html = page_html(Some(Judgement {
            correct: false,
            text: "INCORRECT: oversold by 3 units.",
            notes: &notes,
        }));
        assert!(html.contains("<p class=\"verdict bad\">INCORRECT: oversold by 3 units.</p>"));
        assert!(html.contains("<li>2 attempts got no answer</li>"));
    }
}
