//! Hand-made SVG charts for report.html: inline markup only, no scripts and nothing to
//! fetch, so a report opens the same from a CI artifact years later.

use crate::stats::Histogram;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 46.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// One named series; `NaN` marks a missing point (a bucket without answers).
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

/// A step of 1, 2 or 5 × 10^k such that about `target` steps cover `max`.
pub fn nice_step(max: f64, target: usize) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let multiple = match raw / magnitude {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    };
    multiple * magnitude
}

/// Tick values from 0 to the first multiple of the step at or above `max`.
pub fn ticks(max: f64, target: usize) -> Vec<f64> {
    let step = nice_step(max, target);
    let steps = (max / step).ceil().max(1.0) as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// Time buckets of `bucket_s` seconds over a run of `span_s` seconds; the last bucket is
/// cut at the end of the run, so its rate is not understated.
#[derive(Clone, Copy, Debug)]
pub struct TimeAxis {
    pub bucket_s: f64,
    pub span_s: f64,
}

impl TimeAxis {
    /// Start and end of bucket `i`, in seconds.
    pub fn bucket(&self, i: usize) -> (f64, f64) {
        let start = i as f64 * self.bucket_s;
        // At least a millisecond wide: an answer can land right at the end of the run.
        let end = (start + self.bucket_s)
            .min(self.span_s)
            .max(start + self.bucket_s.min(0.001));
        (start, end)
    }

    pub fn width(&self, i: usize) -> f64 {
        let (start, end) = self.bucket(i);
        end - start
    }

    fn frame(&self, buckets: usize, y_max: f64) -> Frame {
        let last_end = self.bucket(buckets.saturating_sub(1)).1;
        Frame {
            x_max: last_end.max(self.span_s).max(1e-3),
            y_max,
        }
    }
}

/// Maps data coordinates onto the plot area.
struct Frame {
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max * PLOT_W
    }

    fn y(&self, v: f64) -> f64 {
        TOP + PLOT_H - v / self.y_max * PLOT_H
    }
}

fn open(label: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>\n",
        esc(label)
    )
}

fn y_axis(out: &mut String, frame: &Frame, ticks: &[f64], label: &str, fmt: fn(f64) -> String) {
    for &t in ticks {
        let y = frame.y(t);
        *out += &format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>\n",
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            fmt(t)
        );
    }
    let mid = TOP + PLOT_H / 2.0;
    *out += &format!("<text transform=\"translate(16 {mid}) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n", esc(label));
}

fn x_axis(out: &mut String, frame: &Frame, ticks: &[(f64, String)], label: &str) {
    let base = TOP + PLOT_H;
    *out += &format!(
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#888\"/>\n",
        LEFT + PLOT_W
    );
    for (t, text) in ticks {
        let x = frame.x(*t);
        *out += &format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{base}\" y2=\"{}\" stroke=\"#888\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
            base + 5.0,
            base + 18.0,
            esc(text)
        );
    }
    *out += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n",
        LEFT + PLOT_W / 2.0,
        HEIGHT - 6.0,
        esc(label)
    );
}

fn legend(out: &mut String, series: &[Series]) {
    let mut x = LEFT;
    for s in series {
        *out += &format!(
            "<rect x=\"{x}\" y=\"10\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"20\" fill=\"#333\">{}</text>\n",
            s.color,
            x + 17.0,
            esc(s.name)
        );
        x += 30.0 + 7.0 * s.name.chars().count() as f64;
    }
}

fn time_ticks(seconds: f64) -> Vec<(f64, String)> {
    let label = |t: f64| {
        if t == 0.0 {
            "0".to_owned()
        } else {
            fmt_us(t * 1e6)
        }
    };
    ticks(seconds, 10)
        .into_iter()
        .filter(|&t| t <= seconds + 1e-9)
        .map(|t| (t, label(t)))
        .collect()
}

/// Bars per time bucket, the series stacked bottom-up; values are per-second rates.
pub fn stacked_bars(y_label: &str, axis: TimeAxis, series: &[Series]) -> String {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let totals: Vec<f64> = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let y_ticks = ticks(totals.iter().copied().fold(0.0, f64::max), 5);
    let frame = axis.frame(n, *y_ticks.last().unwrap_or(&1.0));
    let mut out = open(y_label);
    y_axis(&mut out, &frame, &y_ticks, y_label, fmt_count);
    for i in 0..n {
        let (start, end) = axis.bucket(i);
        let (left, right) = (frame.x(start), frame.x(end));
        let width = if right - left > 4.0 {
            right - left - 1.0
        } else {
            right - left
        };
        let mut stacked = 0.0;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v > 0.0 {
                let (top, bottom) = (frame.y(stacked + v), frame.y(stacked));
                out += &format!("<rect x=\"{left:.2}\" y=\"{top:.2}\" width=\"{width:.2}\" height=\"{:.2}\" fill=\"{}\"/>", bottom - top, s.color);
                stacked += v;
            }
        }
    }
    out.push('\n');
    x_axis(
        &mut out,
        &frame,
        &time_ticks(frame.x_max),
        "time since start",
    );
    legend(&mut out, series);
    out + "</svg>"
}

/// One line per series over time buckets (points at bucket centres, gaps at `NaN`).
pub fn lines(y_label: &str, axis: TimeAxis, series: &[Series], fmt: fn(f64) -> String) -> String {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_ticks = ticks(max, 5);
    let frame = axis.frame(n, *y_ticks.last().unwrap_or(&1.0));
    let mut out = open(y_label);
    y_axis(&mut out, &frame, &y_ticks, y_label, fmt);
    for s in series {
        let mut points = String::new();
        for (i, v) in s.values.iter().enumerate() {
            if !v.is_finite() {
                polyline(&mut out, &mut points, s.color);
                continue;
            }
            let (start, end) = axis.bucket(i);
            points += &format!("{:.1},{:.1} ", frame.x((start + end) / 2.0), frame.y(*v));
        }
        polyline(&mut out, &mut points, s.color);
    }
    x_axis(
        &mut out,
        &frame,
        &time_ticks(frame.x_max),
        "time since start",
    );
    legend(&mut out, series);
    out + "</svg>"
}

fn polyline(out: &mut String, points: &mut String, color: &str) {
    if !points.is_empty() {
        *out += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\"/>\n",
            points.trim_end()
        );
        points.clear();
    }
}

/// The latency histogram on a logarithmic axis, with a dashed line per marker.
pub fn log_histogram(h: &Histogram, markers: &[(&str, u32)]) -> String {
    let bins = h.counts.len().max(1);
    let decades = (bins as f64 / f64::from(h.per_decade)).max(1.0);
    let y_ticks = ticks(h.counts.iter().copied().max().unwrap_or(0) as f64, 5);
    let frame = Frame {
        x_max: decades,
        y_max: *y_ticks.last().unwrap_or(&1.0),
    };
    let pos = |us: f64| (us.max(1.0).log10() - f64::from(h.lo_exp)).clamp(0.0, decades);
    let mut out = open("latency histogram");
    y_axis(&mut out, &frame, &y_ticks, "answers", fmt_count);
    let bin_w = PLOT_W / bins as f64;
    for (k, &count) in h.counts.iter().enumerate().filter(|(_, &c)| c > 0) {
        let top = frame.y(count as f64);
        out += &format!(
            "<rect x=\"{:.2}\" y=\"{top:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#4a78b5\"/>",
            LEFT + k as f64 * bin_w,
            (bin_w - 1.0).max(0.5),
            TOP + PLOT_H - top
        );
    }
    out.push('\n');
    let ticks: Vec<(f64, String)> = (0..=decades as i32)
        .flat_map(|d| [1.0, 2.0, 5.0].map(|m| (d, m)))
        .map(|(d, m)| (m * 10f64.powi(h.lo_exp + d), m))
        .filter(|&(us, _)| pos(us) <= decades)
        .map(|(us, m)| (pos(us), if m == 1.0 { fmt_us(us) } else { String::new() }))
        .collect();
    x_axis(&mut out, &frame, &ticks, "latency (log scale)");
    for (i, (name, us)) in markers.iter().enumerate() {
        let x = frame.x(pos(f64::from(*us)));
        // Labels sit above the plot, one line per marker, so they never cover bars or
        // each other; near the right edge they are drawn leftwards so they stay visible.
        let label_y = 14.0 + 13.0 * i as f64;
        let fits_right = x + 3.0 + 7.0 * name.chars().count() as f64 <= WIDTH;
        let (label_x, anchor) = if fits_right {
            (x + 3.0, "start")
        } else {
            (x - 3.0, "end")
        };
        out += &format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{label_x:.1}\" y=\"{label_y}\" text-anchor=\"{anchor}\" fill=\"#c0392b\">{}</text>\n",
            label_y - 10.0,
            TOP + PLOT_H,
            esc(name)
        );
    }
    out + "</svg>"
}

/// 12, 2.5k, 1.2M: short labels for counts and rates.
pub fn fmt_count(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(v / 1e3)),
        _ => trim(v),
    }
}

/// 850 µs, 1.5 ms, 2 s.
pub fn fmt_us(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{} s", trim(u / 1e6)),
        u if u >= 1e3 => format!("{} ms", trim(u / 1e3)),
        u => format!("{} µs", trim(u)),
    }
}

/// A number with at most two decimals and no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Escapes text for HTML and SVG content and attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(7.0, 5), 2.0);
        assert_eq!(nice_step(0.9, 5), 0.2);
        assert_eq!(nice_step(12_345.0, 5), 5_000.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
        assert_eq!(ticks(95.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.0, 5), vec![0.0, 1.0]);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(fmt_count(2_500.0), "2.5k");
        assert_eq!(fmt_count(1_200_000.0), "1.2M");
        assert_eq!(fmt_count(40.0), "40");
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(1_500.0), "1.5 ms");
        assert_eq!(fmt_us(2_000_000.0), "2 s");
    }

    #[test]
    fn stacked_bars_draw_one_rect_per_nonzero_value() {
        let series = [
            Series {
                name: "ok",
                color: "#0a0",
                values: vec![10.0, 0.0, 5.0],
            },
            Series {
                name: "errors",
                color: "#a00",
                values: vec![1.0, 2.0, 0.0],
            },
        ];
        let svg = stacked_bars(
            "per second",
            TimeAxis {
                bucket_s: 0.1,
                span_s: 0.25,
            },
            &series,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(
            svg.matches("fill=\"#0a0\"").count(),
            2 + 1,
            "two bars and a legend swatch"
        );
        assert_eq!(svg.matches("fill=\"#a00\"").count(), 2 + 1);
    }

    #[test]
    fn the_last_bucket_ends_with_the_run() {
        let axis = TimeAxis {
            bucket_s: 0.1,
            span_s: 0.25,
        };
        assert_eq!(axis.bucket(0), (0.0, 0.1));
        let (start, end) = axis.bucket(2);
        assert!(
            (start - 0.2).abs() < 1e-9 && (end - 0.25).abs() < 1e-9,
            "{start} {end}"
        );
        assert!((axis.width(2) - 0.05).abs() < 1e-9);
    }

    #[test]
    fn lines_break_at_missing_points() {
        let series = [Series {
            name: "p50",
            color: "#00a",
            values: vec![1.0, 2.0, f64::NAN, 3.0],
        }];
        let svg = lines(
            "ms",
            TimeAxis {
                bucket_s: 1.0,
                span_s: 4.0,
            },
            &series,
            fmt_count,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
