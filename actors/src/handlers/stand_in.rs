//! A scripted HTTP endpoint for the handlers' tests: answers each request
//! with the next canned reply and records what it received.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// One scripted answer; `{auth}` in the body becomes the request's
/// Authorization header, as a careless provider might echo it.
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, &'static str)>,
    pub(crate) body: String,
}

/// A reply without extra headers.
pub(crate) fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// A request as the stand-in received it.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// When it arrived.
    pub(crate) at: Instant,
    /// Request line and headers.
    pub(crate) head: String,
    /// The body as JSON (`null` if it is not JSON).
    pub(crate) body: Value,
}

/// Every request received, in order.
pub(crate) type Log = Arc<Mutex<Vec<Received>>>;

/// Serves `replies` in order (the last one repeats) on 127.0.0.1; returns
/// `http://ADDRESS` and the log of requests.
pub(crate) async fn stand_in(replies: Vec<Reply>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let received = log.clone();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = Vec::new();
            let mut chunk = vec![0u8; 65536];
            let (head, body) = loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                buffer.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buffer).to_string();
                if let Some(split) = text.find("\r\n\r\n") {
                    let length = text[..split]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buffer.len() >= split + 4 + length || n == 0 {
                        break (text[..split].to_string(), text[split + 4..].to_string());
                    }
                }
                if n == 0 {
                    break (text, String::new());
                }
            };
            let auth = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                        .map(|(_, value)| value.trim().to_string())
                })
                .unwrap_or_default();
            received.lock().await.push(Received {
                at: Instant::now(),
                head,
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
            });
            let index = next.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1);
            let Reply {
                status,
                headers,
                body,
            } = replies[index].clone();
            let body = body.replace("{auth}", &auth);
            let mut answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                answer.push_str(&format!("{name}: {value}\r\n"));
            }
            answer.push_str("\r\n");
            answer.push_str(&body);
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (format!("http://{address}"), log)
}
