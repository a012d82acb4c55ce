//! Sessions and dialing: keeping a connection to every seed and peer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId, NodeName};
use ractor::ActorRef;
use ractor_cluster::{NodeId, NodeServerMessage};
use rand::RngExt;
use tracing::{debug, info, warn};

use super::actor::{MembershipLocal, MembershipMsg, MembershipState, SessionRecord};
use super::sessions::{SessionChange, SessionEvent, herd_name_of};
use super::view::MemberInfo;
use crate::tls::ClusterTls;

/// How long after an unauthenticated close the cause is judged.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(500);
/// Longest time to resolve and connect one address.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

impl MembershipState {
    pub(super) fn on_session(&mut self, myself: &ActorRef<MembershipMsg>, event: SessionEvent) {
        match event.change {
            SessionChange::Opened => {
                debug!(peer = %event.peer_addr, inbound = event.inbound, "cluster connection opened");
                self.sessions.insert(
                    event.node_id,
                    SessionRecord {
                        event,
                        authenticated: false,
                    },
                );
            }
            SessionChange::Authenticated | SessionChange::Ready => {
                let now = Instant::now();
                let node_id = event.node_id;
                if let Some(address) = &event.connection_string {
                    self.dialer.connected(address, now);
                }
                // Dial targets given as names resolve to the peer's socket address.
                let dialed: Vec<String> = self
                    .resolved
                    .iter()
                    .filter(|(_, addr)| addr.to_string() == event.peer_addr)
                    .map(|(target, _)| target.clone())
                    .collect();
                for target in dialed {
                    self.dialer.connected(&target, now);
                }
                self.sessions.insert(
                    node_id,
                    SessionRecord {
                        event,
                        authenticated: true,
                    },
                );
                self.attach_session_to_known_peer(node_id);
            }
            SessionChange::Closed => self.on_session_closed(myself, event),
        }
    }

    fn attach_session_to_known_peer(&mut self, node_id: NodeId) {
        let Some(name) = self
            .sessions
            .get(&node_id)
            .and_then(|record| record.event.peer_name.clone())
        else {
            return;
        };
        let herd_name = herd_name_of(&name).to_string();
        let peer = self.view.peers.values_mut().find(|peer| {
            peer.member.name.as_str() == herd_name
                && peer.state == MemberState::Up
                && peer.session.is_none()
        });
        if let Some(peer) = peer {
            peer.session = Some(node_id);
            self.publish();
        }
    }

    fn on_session_closed(&mut self, myself: &ActorRef<MembershipMsg>, event: SessionEvent) {
        let record = self.sessions.remove(&event.node_id);
        let was_authenticated = record.as_ref().is_some_and(|record| record.authenticated);
        if !was_authenticated {
            myself.send_after(HANDSHAKE_GRACE, move || {
                Mailbox::Local(MembershipLocal::CheckHandshake(event))
            });
            return;
        }
        let lost: Vec<MemberId> = self
            .view
            .peers
            .values()
            .filter(|peer| {
                peer.session == Some(event.node_id)
                    && matches!(peer.state, MemberState::Up | MemberState::Suspect)
            })
            .map(|peer| peer.member.clone())
            .collect();
        let peer_name = record.and_then(|closed| closed.event.peer_name);
        // Other connections still authenticating may include the peer's:
        // when both sides dial at once, ractor_cluster's election may close
        // this one before the other authenticates here.
        let others_pending = self.sessions.values().any(|other| !other.authenticated);
        for member in lost {
            if self.move_to_surviving_session(&member, peer_name.as_deref()) {
                continue;
            }
            if others_pending {
                if let Some(peer) = self.view.peers.get_mut(&member.name) {
                    peer.session = None;
                }
                let peer_name = peer_name.clone();
                myself.send_after(HANDSHAKE_GRACE, move || {
                    Mailbox::Local(MembershipLocal::CheckClosedPeer { member, peer_name })
                });
                continue;
            }
            // A closed connection is a certain failure: no detection wait.
            self.declare_down(&member.name, "its connection closed", Duration::ZERO);
        }
    }

    /// ractor_cluster keeps one session per peer process: when both sides
    /// dial at once it closes the loser of its election, and the peer lives
    /// on in the winner. Moves `member` to such a session if there is one.
    fn move_to_surviving_session(&mut self, member: &MemberId, peer_name: Option<&str>) -> bool {
        let Some(peer_name) = peer_name else {
            return false;
        };
        let survivor = self
            .sessions
            .values()
            .filter(|other| {
                other.authenticated && other.event.peer_name.as_deref() == Some(peer_name)
            })
            .map(|other| other.event.node_id)
            .max();
        let Some(node_id) = survivor else {
            return false;
        };
        let Some(peer) = self
            .view
            .peers
            .get_mut(&member.name)
            .filter(|peer| &peer.member == member)
        else {
            return false;
        };
        debug!(peer = %member, "a duplicate cluster connection closed; the peer stays on the other");
        peer.session = Some(node_id);
        self.publish();
        true
    }

    /// A grace after a peer's session closed while others were
    /// authenticating: the peer is down unless one of them is its own.
    pub(super) fn check_closed_peer(&mut self, member: &MemberId, peer_name: Option<&str>) {
        let still_waiting = self.view.peers.get(&member.name).is_some_and(|peer| {
            &peer.member == member
                && peer.session.is_none()
                && matches!(peer.state, MemberState::Up | MemberState::Suspect)
        });
        if !still_waiting || self.move_to_surviving_session(member, peer_name) {
            return;
        }
        self.declare_down(&member.name, "its connection closed", HANDSHAKE_GRACE);
    }

    /// An unauthenticated session closed a while ago. If a session to the
    /// same peer is up now, it was a redundant connection closed by ractor's
    /// election; otherwise the handshake failed.
    pub(super) fn check_handshake(&mut self, event: SessionEvent) {
        let same_peer = |record: &SessionRecord| {
            record.authenticated
                && (event.peer_name.is_some() && record.event.peer_name == event.peer_name
                    || event.connection_string.is_some()
                        && record.event.connection_string == event.connection_string
                    || record.event.peer_addr == event.peer_addr)
        };
        if self.sessions.values().any(same_peer) {
            debug!(peer = %event.peer_addr, "redundant cluster connection closed");
            return;
        }
        metrics::counter!("herd_cluster_handshake_failures_total").increment(1);
        // One warning per peer per minute: a misconfigured node redials often.
        let host = event
            .peer_addr
            .rsplit_once(':')
            .map_or(event.peer_addr.as_str(), |(host, _)| host);
        let key = event.peer_name.clone().unwrap_or_else(|| host.to_string());
        let now = Instant::now();
        if self
            .handshake_warnings
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(60))
        {
            debug!(peer = %event.peer_addr, "cluster handshake failed again");
            return;
        }
        self.handshake_warnings.insert(key, now);
        let direction = if event.inbound { "from" } else { "to" };
        // Over TLS a peer refuses a client certificate only after the
        // handshake completed on this side, so that shows up here too.
        let tls = if self.cluster_tls.is_some() {
            "or the peer refused this node's TLS certificate: its log says why"
        } else {
            "or the peer requires cluster TLS: --cluster-tls-*"
        };
        warn!(
            peer = %event.peer_addr,
            "cluster connection {direction} {} closed before authentication: the peer uses a different cookie or is not a herd node; every node must share the same HERD_COOKIE ({tls})",
            event.peer_addr
        );
    }

    pub(super) fn dial_due(&mut self, myself: &ActorRef<MembershipMsg>) {
        if self.leaving {
            return;
        }
        let now = Instant::now();
        let own = self.config.advertise_addr();
        let connected = connected_addresses(&self.sessions, &self.view.peers);
        let resolved = &self.resolved;
        // A target given as a name is connected if its resolved socket
        // address is; formatting that address is looked at last, as most
        // targets are found by the string they were given as.
        let is_connected = |address: &str| {
            address == own
                || connected.contains(address)
                || resolved
                    .get(address)
                    .is_some_and(|addr| connected.contains(addr.to_string().as_str()))
        };
        for address in self.dialer.due(now, is_connected) {
            let node_server = self.node_server.clone();
            let membership = myself.clone();
            let tls = self.cluster_tls.clone();
            tokio::spawn(async move {
                let result = dial(&node_server, &address, tls.as_ref()).await;
                let _ = membership.cast(Mailbox::Local(MembershipLocal::DialFinished {
                    address,
                    result,
                }));
            });
        }
        if !self.view.discovery_complete && self.dialer.seeds_tried() {
            self.publish();
        }
    }

    pub(super) fn on_dial_finished(
        &mut self,
        address: String,
        result: Result<SocketAddr, DialFailure>,
    ) {
        let jitter = rand::rng().random::<f64>();
        let now = Instant::now();
        match result {
            Ok(resolved) => {
                debug!(%address, %resolved, "connected to peer; handshake under way");
                self.resolved.insert(address.clone(), resolved);
                self.dialer.finished(&address, true, jitter, now);
            }
            Err(DialFailure::Unreachable(reason)) => {
                self.dialer.finished(&address, false, jitter, now);
                let failures = self.dialer.failures(&address);
                if failures == 1 || failures.is_multiple_of(20) {
                    info!(%address, failures, %reason, "peer not reachable yet; retrying with backoff");
                } else {
                    debug!(%address, failures, %reason, "peer still not reachable");
                }
            }
            Err(DialFailure::Tls(reason)) => {
                self.dialer.finished(&address, false, jitter, now);
                let failures = self.dialer.failures(&address);
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(%address, failures, %reason, "cannot join the peer over cluster TLS; retrying with backoff. The peer must run cluster TLS with a certificate from this cluster's CA that names the host dialed");
                } else {
                    debug!(%address, failures, %reason, "cluster TLS handshake with the peer failed again");
                }
            }
        }
        if !self.view.discovery_complete && self.dialer.seeds_tried() {
            self.publish();
        }
    }

    /// Closes the session to `node_id` (after `delay`, so a last message can
    /// leave first).
    pub(super) fn close_session(&self, node_id: NodeId, delay: Duration, reason: &'static str) {
        if let Some(record) = self.sessions.get(&node_id) {
            let session = record.event.session.clone();
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                session.stop(Some(reason.to_string()));
            });
        }
    }

    /// The newest authenticated session of a process that calls itself
    /// `name`.
    pub(super) fn authenticated_session_named(&self, name: &NodeName) -> Option<NodeId> {
        self.sessions
            .values()
            .filter(|record| {
                record.authenticated
                    && record
                        .event
                        .peer_name
                        .as_deref()
                        .is_some_and(|peer| herd_name_of(peer) == name.as_str())
            })
            .map(|record| record.event.node_id)
            .max()
    }

    /// The session of the node called `name` that advertises `address`:
    /// two processes may claim one name, and a refusal must reach (and
    /// close) the right one. Without a session at that address, the only
    /// session under that name, if there is exactly one.
    pub(super) fn session_of(&self, name: &NodeName, address: &str) -> Option<NodeId> {
        let named: Vec<&SessionRecord> = self
            .sessions
            .values()
            .filter(|record| {
                record.authenticated
                    && record
                        .event
                        .peer_name
                        .as_deref()
                        .is_some_and(|peer| herd_name_of(peer) == name.as_str())
            })
            .collect();
        named
            .iter()
            .filter(|record| record.event.connection_string.as_deref() == Some(address))
            .map(|record| record.event.node_id)
            // The newest: an older one is a restarted process's last link.
            .max()
            .or(match named.as_slice() {
                [only] => Some(only.event.node_id),
                _ => None,
            })
    }
}

/// Every address with a live session: the advertised address and socket
/// address of each authenticated session and each up peer's address. Built
/// in one pass over sessions and peers: it runs every dial tick (ten times a
/// second) on every node, so it must not cost the square of the cluster's
/// size.
fn connected_addresses<'a>(
    sessions: &'a HashMap<NodeId, SessionRecord>,
    peers: &'a BTreeMap<NodeName, MemberInfo>,
) -> HashSet<&'a str> {
    let mut connected: HashSet<&str> = HashSet::new();
    for record in sessions.values().filter(|record| record.authenticated) {
        connected.insert(record.event.peer_addr.as_str());
        if let Some(address) = record.event.connection_string.as_deref() {
            connected.insert(address);
        }
    }
    connected.extend(
        peers
            .values()
            .filter(|peer| peer.state == MemberState::Up)
            .map(|peer| peer.cluster_addr.as_str()),
    );
    connected
}

/// Why a dial failed.
#[derive(Debug)]
pub enum DialFailure {
    /// The address did not resolve or did not accept a connection.
    Unreachable(String),
    /// The TLS handshake failed: a configuration problem on one side, not
    /// a peer that is not up yet.
    Tls(String),
}

/// Resolves `address` and opens a cluster connection to it, over mutual TLS
/// when `tls` is set (the peer's certificate must name `address`'s host).
async fn dial(
    node_server: &ActorRef<NodeServerMessage>,
    address: &str,
    tls: Option<&ClusterTls>,
) -> Result<SocketAddr, DialFailure> {
    let unreachable = |reason: &str| DialFailure::Unreachable(reason.to_string());
    let resolved = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::lookup_host(address))
        .await
        .map_err(|_| unreachable("name resolution timed out"))?
        .map_err(|error| DialFailure::Unreachable(format!("cannot resolve: {error}")))?
        .next()
        .ok_or_else(|| unreachable("name resolved to no address"))?;
    let connected = match tls {
        None => {
            tokio::time::timeout(
                DIAL_TIMEOUT,
                ractor_cluster::client_connect(node_server, resolved),
            )
            .await
        }
        Some(tls) => {
            let name = crate::tls::server_name_of(address).map_err(DialFailure::Tls)?;
            tokio::time::timeout(
                DIAL_TIMEOUT,
                ractor_cluster::client_connect_enc(
                    node_server,
                    resolved,
                    tls.connector().clone(),
                    name,
                ),
            )
            .await
        }
    };
    connected
        .map_err(|_| unreachable("connection timed out"))?
        .map_err(|error| match error {
            ractor_cluster::ClientConnectErr::Socket(io) => {
                DialFailure::Unreachable(io.to_string())
            }
            ractor_cluster::ClientConnectErr::Encryption(io) => {
                DialFailure::Tls(format!("TLS handshake failed: {io}"))
            }
            other => DialFailure::Unreachable(other.to_string()),
        })?;
    Ok(resolved)
}
