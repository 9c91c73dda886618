//! Nodes as separate processes of the real binary (`stampede serve`), for the tests that
//! kill one with SIGKILL: nothing of it runs on, no shutdown, no goodbye to the broker or
//! the database — what a crashed host looks like to the rest of the cluster. And reading
//! any node's Prometheus metrics.

use super::broker::{free_port, tail};
use crate::helpers::{eventually, unique};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A node starts (migrations already applied, topics to create) well within this.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct NodeProcess {
    pub name: String,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    child: Child,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts `stampede serve` with `env` (`STAMPEDE_*` settings) and nothing inherited of
    /// this process's `STAMPEDE_*` variables; waits until `/healthz` answers.
    pub async fn start(name: &str, env: &[(&str, String)]) -> NodeProcess {
        let mut node = NodeProcess::spawn(name, "serve", env);
        node.wait_ready().await;
        node
    }

    /// Starts `stampede worker` (no HTTP API: `root` answers nothing) with `env`.
    pub fn worker(name: &str, env: &[(&str, String)]) -> NodeProcess {
        NodeProcess::spawn(name, "worker", env)
    }

    fn spawn(name: &str, subcommand: &str, env: &[(&str, String)]) -> NodeProcess {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let out = File::create(&log).expect("create the node's log file");
        let err = out.try_clone().expect("clone the node's log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_stampede"));
        command.arg(subcommand);
        for (var, _) in std::env::vars() {
            if var.starts_with("STAMPEDE_") || var == "RUST_LOG" {
                command.env_remove(var);
            }
        }
        command
            .env("STAMPEDE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {name}: {e}"));
        NodeProcess {
            name: name.to_owned(),
            root: format!("http://127.0.0.1:{port}"),
            child,
            log,
        }
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("{}/healthz", self.root);
        let what = format!("node {} to answer {url}", self.name);
        eventually(READY_WITHIN, &what, || {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                panic!(
                    "node {} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let request = client.get(&url).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the node");
        let status = self.child.wait().expect("wait for the killed node");
        assert!(
            !status.success(),
            "node {} exited cleanly instead of being killed",
            self.name
        );
    }

    /// Whether the process still runs (it has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Uncaptured, like a skip: a failing test's node logs are the first thing to read.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "---- node {} ({}), last lines of {}:\n{}",
                self.name,
                self.root,
                self.log.display(),
                self.log_tail()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The Prometheus text at `{root}/metrics`, or `None` when the node does not answer.
pub async fn metrics(client: &reqwest::Client, root: &str) -> Option<String> {
    let response = client
        .get(format!("{root}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    response.text().await.ok()
}

/// The value of the sample `name` whose labels include every one of `labels`; the sum when
/// several match (a labelled family asked for by fewer labels). `None` when none does.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let matches = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if matches {
            let value: f64 = value.trim().parse().unwrap_or_else(|_| {
                panic!("metric line {line:?} has no number");
            });
            total = Some(total.unwrap_or(0.0) + value);
        }
    }
    total
}
