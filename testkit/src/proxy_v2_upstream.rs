//! A TCP upstream that expects a PROXY protocol v2 header, parses it, and answers
//! `source <client address>\n` before echoing everything else.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A running upstream; stops when dropped.
pub struct ProxyV2Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProxyV2Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the upstream on `127.0.0.1:0`.
pub async fn start() -> ProxyV2Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy v2 upstream");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // 16-byte fixed part; its last two bytes give the length of the rest.
                let mut head = vec![0u8; 16];
                if stream.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                head.resize(16 + len, 0);
                if stream.read_exact(&mut head[16..]).await.is_err() {
                    return;
                }
                let answer = match Header::try_from(head.as_slice()) {
                    Ok(h) => match h.addresses {
                        Addresses::IPv4(a) => {
                            format!("source {}:{}\n", a.source_address, a.source_port)
                        }
                        Addresses::IPv6(a) => {
                            format!("source [{}]:{}\n", a.source_address, a.source_port)
                        }
                        other => format!("source {other:?}\n"),
                    },
                    Err(e) => format!("bad header {e:?}\n"),
                };
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    ProxyV2Upstream { addr, task }
}
