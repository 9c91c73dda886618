//! The metric samples a node publishes in its heartbeat, for the operations page to sum
//! across the cluster: read back from the node's own `/metrics` text, so the page and
//! Prometheus count with the very same counters.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One sample line of the exposition: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// The samples of `text` (Prometheus or OpenMetrics text) that `keep` accepts. Lines that
/// do not parse are skipped: the text is our own, and a sample the page cannot read must
/// not stop the heartbeat.
pub fn parse(text: &str, keep: impl Fn(&Sample) -> bool) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .filter(|sample| keep(sample))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let (labels, rest) = if let Some(rest) = rest.strip_prefix('{') {
        parse_labels(rest)?
    } else {
        (BTreeMap::new(), rest)
    };
    // A value, then perhaps a timestamp or an exemplar: the value is the first field.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"} rest` → the labels and `rest`. Values may hold escaped `\"`, `\\`, `\n`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_owned();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(name, value);
        s = &s[end + 1..];
    }
}

/// Samples summed over nodes by name and labels.
#[derive(Debug, Default)]
pub struct Totals(BTreeMap<(String, Vec<(String, String)>), f64>);

impl Totals {
    pub fn add(&mut self, sample: &Sample) {
        let labels = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        *self.0.entry((sample.name.clone(), labels)).or_default() += sample.value;
    }

    /// The sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series(name).map(|(_, v)| v).sum()
    }

    /// Every series of `name`: its labels and total.
    pub fn series<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a [(String, String)], f64)> + 'a {
        self.0
            .iter()
            .filter(move |((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.as_slice(), *v))
    }

    /// `name`'s totals by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for (labels, value) in self.series(name) {
            if let Some((_, key)) = labels.iter().find(|(k, _)| k == label) {
                *by.entry(key.clone()).or_default() += count(value);
            }
        }
        by
    }
}

/// A counter's value as a whole number (counters are integral here).
pub fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_parse_with_labels_escapes_and_infinities() {
        let text = "# HELP orders_placed Orders placed\n\
            # TYPE orders_placed counter\n\
            orders_placed_total 12\n\
            orders_rejected_total{reason=\"out_of_stock\"} 3\n\
            x_bucket{le=\"+Inf\",route=\"/a \\\"b\\\"\"} 7\n\
            broken{reason=\"x\" 1\n\
            # EOF\n";
        let samples = parse(text, |_| true);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "orders_placed_total");
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].label("reason"), Some("out_of_stock"));
        assert_eq!(samples[2].label("le"), Some("+Inf"));
        assert_eq!(samples[2].label("route"), Some("/a \"b\""));
    }

    #[test]
    fn totals_sum_the_same_series_across_nodes() {
        let node = |placed: f64, refused: f64| {
            parse(
                &format!(
                    "orders_placed_total {placed}\norders_rejected_total{{reason=\"out_of_stock\"}} {refused}\n"
                ),
                |_| true,
            )
        };
        let mut totals = Totals::default();
        for sample in node(2.0, 5.0).iter().chain(&node(3.0, 1.0)) {
            totals.add(sample);
        }
        assert_eq!(totals.sum("orders_placed_total"), 5.0);
        assert_eq!(
            totals.by("orders_rejected_total", "reason")["out_of_stock"],
            6
        );
        assert_eq!(totals.sum("missing"), 0.0);
    }
}
