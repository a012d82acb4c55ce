//! The HTTPS step of a connection: the TLS handshake, run in the
//! connection's own task and bounded by the caller (the header timeout), so
//! a client that stalls it holds one slot briefly and never the accept loop.
//!
//! A client that speaks plain HTTP to the HTTPS port gets a plain-text
//! `400` saying to use `https://` (instead of a dropped connection, which
//! clients report as an unexplained reset).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Most bytes of a plain-HTTP request read (and dropped) after answering it.
const MAX_DISCARDED_BYTES: usize = 64 * 1024;

/// Runs the server side of the handshake; `None` when the connection ends
/// instead (logged at debug: a client's mistake, not the node's).
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) if first[0].is_ascii_alphabetic() => {
            debug!(%peer, "plain http request on the https port; answering 400");
            let _ = stream.write_all(PLAIN_HTTP_ANSWER.as_bytes()).await;
            let _ = stream.shutdown().await;
            // Closing with the request unread would reset the connection,
            // and the client could lose the answer: read the rest (the
            // caller's timeout bounds how long) until the client closes.
            let mut discard = [0u8; 4096];
            let mut budget = MAX_DISCARDED_BYTES;
            while budget > 0 {
                match stream.read(&mut discard).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => budget = budget.saturating_sub(read),
                }
            }
            return None;
        }
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
            debug!(%peer, "neither TLS nor HTTP on the https port; closing");
            return None;
        }
        Ok(_) => {}
    }
    match acceptor.accept(stream).await {
        Ok(stream) => Some(stream),
        Err(error) => {
            debug!(%peer, %error, "tls handshake failed");
            None
        }
    }
}

/// What a plain-HTTP request to the HTTPS port gets: the API's JSON error
/// shape, and `Connection: close` (the rest of the request is not read).
const PLAIN_HTTP_ANSWER: &str = concat!(
    "HTTP/1.1 400 Bad Request\r\n",
    "content-type: application/json\r\n",
    "connection: close\r\n",
    "content-length: 121\r\n",
    "\r\n",
    r#"{"error":"this port serves the herd API over TLS: use https:// (and --ca-cert for a private CA)","code":"https_required"}"#,
);

#[cfg(test)]
mod tests {
    use super::PLAIN_HTTP_ANSWER;

    #[test]
    fn the_plain_http_answer_has_a_correct_length() {
        let (head, body) = PLAIN_HTTP_ANSWER.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "https_required");
    }
}
