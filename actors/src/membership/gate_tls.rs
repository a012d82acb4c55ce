//! The gate's TLS step: with cluster TLS on, every accepted socket must
//! complete a mutual-TLS handshake (a client certificate signed by the
//! cluster CA) before ractor_cluster sees a byte of it. The handshake runs
//! in the connection's own task, under the gate's deadline and permit, so a
//! stalled or hostile handshake costs one permit for at most the deadline.
//!
//! A refused connection is logged with the reason an operator needs: a
//! plaintext herd node (it speaks first, and its first byte is not a TLS
//! record), or the TLS error (no certificate, another CA, an expired one).
//! The same peer is warned about once a minute; a misconfigured node
//! redials every few seconds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor_cluster::{BoxRead, BoxWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How often one peer's refusals are logged at warn level.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Peers remembered for warning suppression; beyond this the memory is
/// cleared, so a scan from many addresses cannot grow it.
const MAX_REMEMBERED_PEERS: usize = 1024;

/// An admitted cluster connection, before ractor_cluster reads it.
pub(super) enum ClusterTransport {
    /// The socket itself (cluster TLS off).
    Plain(TcpStream),
    /// The socket after a successful mutual-TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClusterTransport {
    /// The read and write halves ractor_cluster's session takes.
    pub(super) fn split(self) -> (BoxRead, BoxWrite) {
        match self {
            ClusterTransport::Plain(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            ClusterTransport::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                (Box::new(read), Box::new(write))
            }
        }
    }

    /// The local end's address, for diagnostics.
    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            ClusterTransport::Plain(stream) => stream.local_addr().ok(),
            ClusterTransport::Tls(stream) => stream.get_ref().0.local_addr().ok(),
        }
    }
}

/// Runs the server side of the handshake; `None` when the peer was refused
/// (already logged). The caller bounds the time.
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    warnings: &RefusalWarnings,
) -> Option<ClusterTransport> {
    // herd's dialer speaks first in either mode, so the first byte tells a
    // plaintext node from a TLS one without consuming anything.
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => {
            debug!(%peer, "cluster connection closed before its first byte");
            return None;
        }
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
            metrics::counter!("herd_cluster_tls_refusals_total", "reason" => "plaintext")
                .increment(1);
            warnings.warn(peer, Refusal::Plaintext, |peer| {
                warn!(
                    %peer,
                    "refused a plaintext cluster connection: this node requires cluster TLS; give every node of the cluster --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca (HERD_CLUSTER_TLS_*) with certificates from the same CA"
                )
            });
            return None;
        }
        Ok(_) => {}
    }
    match acceptor.accept(stream).await {
        Ok(stream) => Some(ClusterTransport::Tls(Box::new(stream))),
        Err(error) => {
            metrics::counter!("herd_cluster_tls_refusals_total", "reason" => "handshake")
                .increment(1);
            warnings.warn(peer, Refusal::Handshake, |peer| {
                warn!(
                    %peer,
                    %error,
                    "refused a cluster connection: the TLS handshake failed; every node needs a certificate signed by this cluster's CA (--cluster-tls-ca) with the clientAuth and serverAuth usages, and must trust the same CA"
                )
            });
            None
        }
    }
}

/// Why a connection was refused, for warning suppression.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Refusal {
    Plaintext,
    Handshake,
}

/// Remembers when each peer host was last warned about, per reason (nodes
/// on one host share its address, and a second misconfigured one must
/// still be reported).
#[derive(Clone, Default)]
pub(super) struct RefusalWarnings {
    last: Arc<Mutex<HashMap<(IpAddr, Refusal), Instant>>>,
}

impl RefusalWarnings {
    /// Calls `log` unless `peer`'s host was warned about within
    /// [`WARN_EVERY`]; logs at debug level otherwise.
    fn warn(&self, peer: SocketAddr, refusal: Refusal, log: impl FnOnce(SocketAddr)) {
        let now = Instant::now();
        let due = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.len() >= MAX_REMEMBERED_PEERS {
                last.clear();
            }
            match last.get(&(peer.ip(), refusal)) {
                Some(at) if now.duration_since(*at) < WARN_EVERY => false,
                _ => {
                    last.insert((peer.ip(), refusal), now);
                    true
                }
            }
        };
        if due {
            log(peer);
        } else {
            debug!(%peer, "refused a cluster connection again");
        }
    }
}
