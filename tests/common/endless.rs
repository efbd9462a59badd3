//! A server whose every answer is `200` with a body far larger than any real answer (spaces,
//! so a JSON reader would have to read it all), written until the client stops reading. It
//! counts what the client took, so a test can tell "cut off early" from "read it all".

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the body claims and, at most, sends: 200 MiB.
pub const BODY_BYTES: u64 = 200 * 1024 * 1024;

pub struct EndlessServer {
    address: SocketAddr,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EndlessServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EndlessServer {
    /// Listens on 127.0.0.1 on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    // The request head; its body, if any, is left unread.
                    let mut head = Vec::new();
                    let mut buffer = [0_u8; 4096];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {BODY_BYTES}\r\n\r\n"
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 64 * 1024];
                    let mut written = 0_u64;
                    while written < BODY_BYTES {
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                        written += chunk.len() as u64;
                        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Self {
            address,
            sent,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`, with `path` after it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Bytes of body the clients accepted so far (kernel buffers included).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}
