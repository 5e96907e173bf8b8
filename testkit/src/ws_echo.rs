//! A plaintext WebSocket upstream: it first sends `path: <request target>` (so a test can see the
//! path it was reached on), then echoes every message.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// A running echo server; stops when dropped.
pub struct WsEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the server on `127.0.0.1:0`.
pub async fn start() -> WsEcho {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind ws echo");
    let addr = listener.local_addr().expect("ws echo addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut path = String::new();
                // The callback's error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| {
                    path = req.uri().to_string();
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                if ws
                    .send(Message::text(format!("path: {path}")))
                    .await
                    .is_err()
                {
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    WsEcho { addr, task }
}
