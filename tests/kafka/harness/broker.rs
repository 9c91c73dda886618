//! A Tansu broker of the test's own: on a free port, in memory, behind a link of the test's
//! own ([`Link`]), killed on drop. Taken away and given back without losing its topics (a
//! restart would lose them: its storage is in memory) in two ways:
//!
//! - paused (SIGSTOP / SIGCONT): it keeps its connections open and answers nothing, like a
//!   host that stopped responding; whatever clients sent meanwhile reaches it afterwards;
//! - cut off ([`Link`]): nothing reaches it; what clients sent meanwhile reaches it
//!   afterwards, except what a client that died meanwhile had sent.

use super::link::Link;
use crate::helpers::{eventually, unique};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a broker gets to accept connections; it is ready in milliseconds when idle.
const LISTEN_WITHIN: Duration = Duration::from_secs(20);

pub struct PrivateBroker {
    child: Child,
    /// Where the broker itself listens; clients are told the link's address.
    port: u16,
    link: Link,
    log: PathBuf,
    paused: AtomicBool,
}

impl PrivateBroker {
    /// Starts `tansu broker` from the binary at `tansu` and waits until it listens.
    pub async fn start(tansu: &str) -> PrivateBroker {
        let port = free_port();
        let link = Link::start(port).await;
        let address = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", link.port());
        let log = std::env::temp_dir().join(format!("{}.log", unique("tansu")));
        let out = File::create(&log).expect("create the broker's log file");
        let err = out.try_clone().expect("clone the broker's log file");
        let child = Command::new(tansu)
            .arg("broker")
            // Flags, not tansu's environment variables, which the caller's environment
            // could set; a cluster id of its own, so no two brokers look alike.
            .args(["--cluster-id", &unique("cluster")])
            .args(["--listener-url", &address])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {tansu}: {e}"));
        let mut broker = PrivateBroker {
            child,
            port,
            link,
            log,
            paused: AtomicBool::new(false),
        };
        broker.wait_listening().await;
        broker
    }

    async fn wait_listening(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let what = format!("the private broker to listen on {addr}");
        eventually(LISTEN_WITHIN, &what, || {
            let addr = addr.clone();
            if let Some(status) = self.child.try_wait().ok().flatten() {
                panic!(
                    "the private broker exited ({status}) before listening:\n{}",
                    self.log_tail()
                );
            }
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        })
        .await;
    }

    /// `127.0.0.1:PORT` of the link, what `STAMPEDE_KAFKA_BROKERS` and clients take.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.link.port())
    }

    /// Cuts every client off the broker until the guard is restored or dropped; see
    /// [`Link`].
    pub fn cut_off(&self) -> CutOff<'_> {
        self.link.hold();
        CutOff { broker: self }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the broker: it stops answering, its sockets stay open. It runs again when
    /// the guard is resumed or dropped (so a failing test does not leave the node's
    /// shutdown waiting on a frozen broker).
    /// Returns once the kernel reports the process stopped: a signal is delivered
    /// asynchronously, and a busy broker may run on for a moment after `kill` returned.
    pub fn pause(&self) -> Paused<'_> {
        signal(self.pid(), "-STOP");
        self.paused.store(true, Ordering::SeqCst);
        let paused = Paused { broker: self };
        let deadline = std::time::Instant::now() + STOP_WITHIN;
        while self.process_state() != 'T' {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker did not stop within {STOP_WITHIN:?} of SIGSTOP"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        paused
    }

    fn resume(&self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            signal(self.pid(), "-CONT");
        }
    }

    /// The process state as the kernel reports it: `T` while stopped.
    pub fn process_state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read the broker's /proc stat");
        // `pid (comm) S …`: the state follows the last `)`, since comm may hold one.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .expect("a state in /proc/PID/stat")
    }

    /// The end of the broker's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

/// Longest wait for a stopped broker to show as stopped.
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A paused broker; see [`PrivateBroker::pause`].
pub struct Paused<'a> {
    broker: &'a PrivateBroker,
}

impl Paused<'_> {
    pub fn resume(self) {
        self.broker.resume();
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.broker.resume();
    }
}

/// A broker cut off from its clients; see [`PrivateBroker::cut_off`].
pub struct CutOff<'a> {
    broker: &'a PrivateBroker,
}

impl CutOff<'_> {
    pub fn restore(self) {
        self.broker.link.release();
    }
}

impl Drop for CutOff<'_> {
    fn drop(&mut self) {
        self.broker.link.release();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `kill -SIG pid`: the standard library sends only SIGKILL, and unsafe code (libc) is
/// forbidden here.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill {sig} {pid}: {e}"));
    assert!(status.success(), "kill {sig} {pid} failed: {status}");
}

/// A port nobody listens on now. Another process could take it before the caller binds
/// it; the caller then fails to start, loudly.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The last `lines` lines of a log file, or why it cannot be read.
pub fn tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
