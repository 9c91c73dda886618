//! The network between the clients and a private broker: a TCP proxy in the test process,
//! which the broker advertises as its address, so every client — in-process node, child
//! process, test reader — reaches the broker through it. Normally it only forwards. Cut
//! off, it holds what clients send (the broker hears nothing, so answers nothing); restored,
//! it delivers what waited — except what a client that died meanwhile had sent, which is
//! dropped with its connection, as a crashed host's packets in flight are lost. A SIGKILL
//! alone would not lose them: the dead process's kernel still delivers its socket buffers.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Link {
    port: u16,
    held: Arc<watch::Sender<bool>>,
    accepting: JoinHandle<()>,
}

impl Link {
    /// Listens on a free port and forwards each connection to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the broker link");
        let port = listener.local_addr().expect("the link's address").port();
        let held = Arc::new(watch::channel(false).0);
        let accepting = tokio::spawn(accept(listener, upstream, held.clone()));
        Link {
            port,
            held,
            accepting,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Each connection's task ends when its client or the broker goes.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, upstream: u16, held: Arc<watch::Sender<bool>>) {
    while let Ok((client, _)) = listener.accept().await {
        let held = held.subscribe();
        tokio::spawn(async move {
            // A broker that is gone ends the client's connection too.
            if let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream)).await {
                connect(client, broker, held).await;
            }
        });
    }
}

/// Runs one connection until either side closes it, then closes both.
async fn connect(client: TcpStream, broker: TcpStream, held: watch::Receiver<bool>) {
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let (from_client, to_client) = client.into_split();
    let (mut from_broker, to_broker) = broker.into_split();
    let mut to_client = to_client;
    tokio::select! {
        () = requests(from_client, to_broker, held) => {}
        _ = tokio::io::copy(&mut from_broker, &mut to_client) => {}
    }
}

/// Client to broker: forwarded at once unless held; what waits is dropped if the client
/// goes first.
async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
) {
    let mut waiting: Vec<u8> = Vec::new();
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        if !*held.borrow_and_update() && !waiting.is_empty() {
            // Whether the client went while held, looked at before anything waiting is
            // delivered: a client killed before the release is gone by now, and its
            // close is already readable.
            loop {
                match from.try_read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => waiting.extend_from_slice(&buffer[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
            if to.write_all(&waiting).await.is_err() {
                return;
            }
            waiting.clear();
        }
        tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => waiting.extend_from_slice(&buffer[..n]),
            },
            changed = held.changed() => if changed.is_err() { return },
        }
    }
}
