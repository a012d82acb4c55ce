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
use tracing::{debug, warn};

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
/// handing connections to `node_server`. Returns the subscription to
/// register with the `NodeServer` and the accept loop's handle: aborting it
/// closes the cluster port.
pub fn start(
    listener: TcpListener,
    node_server: ActorRef<NodeServerMessage>,
    limits: GateLimits,
) -> (GateRelay, tokio::task::AbortHandle) {
    let waiting: Waiting = Arc::default();
    let pending = Arc::new(Semaphore::new(limits.max_pending.max(1)));
    let relay = GateRelay {
        waiting: waiting.clone(),
    };
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
            if admit(stream, peer, permit, &node_server, &waiting, limits).is_err() {
                // The NodeServer stopped: the node is shutting down.
                return;
            }
        }
    });
    (relay, accept_loop.abort_handle())
}

/// Hands one connection to the `NodeServer` and arms its deadline.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    node_server: &ActorRef<NodeServerMessage>,
    waiting: &Waiting,
    limits: GateLimits,
) -> Result<(), ()> {
    let _ = stream.set_nodelay(true);
    // A second descriptor for the same socket: shutting it down ends the
    // session's reads without reaching into ractor_cluster.
    let Ok(watch) = stream
        .into_std()
        .and_then(|std| std.try_clone().map(|clone| (std, clone)))
    else {
        return Ok(());
    };
    let (socket, watch) = watch;
    let Ok(stream) = TcpStream::from_std(socket) else {
        return Ok(());
    };
    let label = peer.to_string();
    let (authenticated_tx, mut authenticated) = watch::channel(false);
    waiting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(label.clone(), authenticated_tx);
    node_server
        .cast(NodeServerMessage::ConnectionOpenedExternal {
            stream: Box::new(GatedStream {
                stream,
                label: label.clone(),
                authenticated: authenticated.clone(),
                max_frame_before_auth: limits.max_frame_before_auth,
            }),
            is_server: true,
        })
        .map_err(|_| ())?;
    let waiting = waiting.clone();
    let deadline = limits.deadline;
    tokio::spawn(async move {
        // Ends early when the connection authenticates or closes.
        let settled = authenticated.wait_for(|authenticated| *authenticated);
        if tokio::time::timeout(deadline, settled).await.is_err() {
            waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&label);
            warn!(peer = %label, deadline_s = deadline.as_secs_f64(), "cluster connection closed: no authentication within the deadline");
            let _ = watch.shutdown(std::net::Shutdown::Both);
        }
        drop(permit);
    });
    Ok(())
}

/// An accepted socket as ractor_cluster's external transport, labelled with
/// the peer's address (what session events report as `peer_addr`); its
/// reads are limited to small frames until it authenticates.
struct GatedStream {
    stream: TcpStream,
    label: String,
    authenticated: watch::Receiver<bool>,
    max_frame_before_auth: u64,
}

impl ClusterBidiStream for GatedStream {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = self.stream.into_split();
        let read = PreauthFrames::new(
            read,
            self.label,
            self.max_frame_before_auth,
            self.authenticated,
        );
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.label.clone())
    }

    fn local_label(&self) -> Option<String> {
        self.stream.local_addr().ok().map(|addr| addr.to_string())
    }
}
