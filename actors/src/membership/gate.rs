//! Admission of inbound cluster connections: herd's own listener in front of
//! ractor_cluster's.
//!
//! ractor_cluster gives every accepted socket a session that waits for the
//! cookie handshake forever, with no cap on how many wait. A stranger who
//! can reach the cluster port could therefore hold any number of
//! descriptors and session actors by connecting and sending nothing. The
//! gate accepts on the cluster port itself and hands each socket to the
//! `NodeServer` as an external stream, so that it can guarantee:
//!
//! - at most `max_pending` connections are unauthenticated at once; one
//!   beyond that is closed at once (the peer's dialer retries), so a flood
//!   costs descriptors only briefly;
//! - a connection that has not authenticated within `deadline` is shut
//!   down (its session then sees end of stream and stops);
//! - until it authenticates, a connection may send no frame larger than
//!   `max_frame_before_auth` (see [`super::preauth_frames`]), so a stranger
//!   cannot make the node buffer ractor_cluster's 16 MiB per connection.
//! - with cluster TLS, nothing reaches ractor_cluster before a mutual-TLS
//!   handshake succeeds, and that handshake counts against the same
//!   deadline and cap.
//!
//! Authenticated connections are untouched: the gate lets go of them. The
//! `NodeServer`'s own listener is bound to an ephemeral loopback port that
//! nothing dials (see [`super::actor`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{
    BoxRead, BoxWrite, ClusterBidiStream, NodeEventSubscription, NodeServerMessage,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::gate_tls::{self, ClusterTransport, RefusalWarnings};
use super::preauth_frames::PreauthFrames;

/// The bounds of the gate.
#[derive(Clone, Copy, Debug)]
pub struct GateLimits {
    /// Longest a connection may stay unauthenticated.
    pub deadline: Duration,
    /// Most unauthenticated connections at once.
    pub max_pending: usize,
    /// Largest frame, in bytes, a connection may send before it authenticates.
    pub max_frame_before_auth: u64,
}

/// Connections waiting for authentication, by peer address (the label the
/// `NodeServer` reports back in its session events). The sender turns true
/// when the connection authenticates and is dropped when it closes.
type Waiting = Arc<Mutex<HashMap<String, watch::Sender<bool>>>>;

/// Subscription that tells the gate a connection authenticated or closed.
pub struct GateRelay {
    waiting: Waiting,
}

impl GateRelay {
    fn release(&self, info: &NodeServerSessionInformation, authenticated: bool) {
        if !info.is_server {
            return;
        }
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&info.peer_addr);
        if let Some(waiter) = waiter
            && authenticated
        {
            waiter.send_replace(true);
        }
    }
}

impl NodeEventSubscription for GateRelay {
    fn node_session_opened(&self, _info: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, info: NodeServerSessionInformation) {
        self.release(&info, false);
    }

    fn node_session_authenticated(&self, info: NodeServerSessionInformation) {
        self.release(&info, true);
    }

    fn node_session_ready(&self, _info: NodeServerSessionInformation) {}
}

/// Starts accepting on `listener` (already bound to the cluster address),
/// handing connections to `node_server`. With `tls`, each connection must
/// first complete a mutual-TLS handshake (see [`super::gate_tls`]) within
/// the same deadline and under the same permit. Returns the subscription to
/// register with the `NodeServer` and the accept loop's handle: aborting it
/// closes the cluster port.
pub fn start(
    listener: TcpListener,
    node_server: ActorRef<NodeServerMessage>,
    limits: GateLimits,
    tls: Option<TlsAcceptor>,
) -> (GateRelay, tokio::task::AbortHandle) {
    let waiting: Waiting = Arc::default();
    let pending = Arc::new(Semaphore::new(limits.max_pending.max(1)));
    let relay = GateRelay {
        waiting: waiting.clone(),
    };
    let warnings = RefusalWarnings::default();
    let accept_loop = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "cannot accept a cluster connection; pausing for a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Ok(permit) = pending.clone().try_acquire_owned() else {
                debug!(%peer, "too many unauthenticated cluster connections; closing this one");
                continue;
            };
            let Some((stream, watch)) = watched(stream) else {
                continue;
            };
            let admission = Admission {
                peer,
                watch,
                permit,
                node_server: node_server.clone(),
                waiting: waiting.clone(),
                deadline: tokio::time::Instant::now() + limits.deadline,
                limit: limits.deadline,
                max_frame_before_auth: limits.max_frame_before_auth,
            };
            let tls = tls.clone();
            let warnings = warnings.clone();
            // Each connection in its own task: a slow handshake never holds
            // up the accept loop.
            tokio::spawn(async move {
                let transport = match tls {
                    None => ClusterTransport::Plain(stream),
                    Some(acceptor) => {
                        let handshake = gate_tls::accept(&acceptor, stream, peer, &warnings);
                        match tokio::time::timeout_at(admission.deadline, handshake).await {
                            Ok(Some(transport)) => transport,
                            Ok(None) => return,
                            Err(_) => {
                                admission.expired("no TLS handshake");
                                return;
                            }
                        }
                    }
                };
                admission.admit(transport).await;
            });
        }
    });
    (relay, accept_loop.abort_handle())
}

/// The socket, and a second descriptor for it: shutting that one down ends
/// the session's reads without reaching into ractor_cluster (or into the
/// TLS stream wrapped around the socket).
fn watched(stream: TcpStream) -> Option<(TcpStream, std::net::TcpStream)> {
    let _ = stream.set_nodelay(true);
    let socket = stream.into_std().ok()?;
    let watch = socket.try_clone().ok()?;
    let stream = TcpStream::from_std(socket).ok()?;
    Some((stream, watch))
}

/// One accepted connection on its way to authentication; holds its permit
/// until it authenticates, closes or runs out of time.
struct Admission {
    peer: SocketAddr,
    watch: std::net::TcpStream,
    permit: OwnedSemaphorePermit,
    node_server: ActorRef<NodeServerMessage>,
    waiting: Waiting,
    /// When the connection must have authenticated (counted from accept).
    deadline: tokio::time::Instant,
    /// The gate's deadline, for the log line.
    limit: Duration,
    /// Largest frame the connection may send before it authenticates.
    max_frame_before_auth: u64,
}

impl Admission {
    /// Hands the connection to the `NodeServer` and waits for it to
    /// authenticate, shutting it down at the deadline.
    async fn admit(self, transport: ClusterTransport) {
        let label = self.peer.to_string();
        let (authenticated_tx, mut authenticated) = watch::channel(false);
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(label.clone(), authenticated_tx);
        let local = transport.local_addr().map(|addr| addr.to_string());
        let opened = self
            .node_server
            .cast(NodeServerMessage::ConnectionOpenedExternal {
                stream: Box::new(GatedStream {
                    stream: transport,
                    label: label.clone(),
                    local,
                    authenticated: authenticated.clone(),
                    max_frame_before_auth: self.max_frame_before_auth,
                }),
                is_server: true,
            });
        if opened.is_err() {
            // The NodeServer stopped: the node is shutting down.
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&label);
            return;
        }
        // Ends early when the connection authenticates or closes.
        let settled = authenticated.wait_for(|authenticated| *authenticated);
        if tokio::time::timeout_at(self.deadline, settled)
            .await
            .is_err()
        {
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&label);
            self.expired("no authentication");
        }
    }

    /// Closes a connection that missed the deadline.
    fn expired(self, missing: &str) {
        warn!(peer = %self.peer, deadline_s = self.limit.as_secs_f64(), "cluster connection closed: {missing} within the deadline");
        let _ = self.watch.shutdown(std::net::Shutdown::Both);
        drop(self.permit);
    }
}

/// An accepted socket as ractor_cluster's external transport, labelled with
/// the peer's address (what session events report as `peer_addr`); its
/// reads are limited to small frames until it authenticates.
struct GatedStream {
    stream: ClusterTransport,
    label: String,
    authenticated: watch::Receiver<bool>,
    max_frame_before_auth: u64,
    local: Option<String>,
}

impl ClusterBidiStream for GatedStream {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = self.stream.split();
        let read = PreauthFrames::new(
            read,
            self.label,
            self.max_frame_before_auth,
            self.authenticated,
        );
        (Box::new(read), write)
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.label.clone())
    }

    fn local_label(&self) -> Option<String> {
        self.local.clone()
    }
}
