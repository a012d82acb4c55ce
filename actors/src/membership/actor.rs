//! The membership actor: see the module docs.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_config::NodeConfig;
use herd_protocol::messages::membership::{Greeting, MembershipCast, Refusal};
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::{NoReply, NoRequest, groups};
use herd_protocol::{Mailbox, MemberId, Protocol, UnixMillis};
use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeId, NodeServer, NodeServerMessage};
use rand::RngExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::dialer::Dialer;
use super::sessions::{SessionChange, SessionEvent, SessionRelay};
use super::view::{ClusterView, MemberInfo};
use crate::runtime::FatalError;

/// How often due dials are started.
const DIAL_TICK: Duration = Duration::from_millis(100);
/// How long after an unauthenticated close the cause is judged.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(500);
/// Longest time to resolve and connect one address.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The membership actor's message vocabulary.
pub struct MembershipProtocol;

impl Protocol for MembershipProtocol {
    const NAME: &'static str = "membership";
    type Cast = MembershipCast;
    type Request = NoRequest;
    type Reply = NoReply;
    type Local = MembershipLocal;
}

/// The membership actor's mailbox type.
pub type MembershipMsg = Mailbox<MembershipProtocol>;

/// Messages from this node to the membership actor.
#[derive(Debug)]
pub enum MembershipLocal {
    /// A ractor_cluster session changed.
    Session(SessionEvent),
    /// Start due dials.
    DialTick,
    /// A session closed before authenticating; decide after a grace period
    /// whether it lost ractor's duplicate-connection election (harmless) or
    /// failed the cookie handshake.
    CheckHandshake(SessionEvent),
    /// A dial ended.
    DialFinished {
        /// The address dialed.
        address: String,
        /// The resolved socket address, or why it failed.
        result: Result<SocketAddr, String>,
    },
}

/// Starts membership for one node.
pub struct MembershipArgs {
    /// The node's configuration.
    pub config: Arc<NodeConfig>,
    /// This node's greeting.
    pub greeting: Greeting,
    /// Where the view is published.
    pub view: watch::Sender<ClusterView>,
    /// Where fatal refusals are reported (the node must stop).
    pub fatal: mpsc::UnboundedSender<FatalError>,
}

/// The membership actor.
pub struct Membership;

/// What the membership actor tracks about one session.
#[derive(Debug)]
struct SessionRecord {
    event: SessionEvent,
    authenticated: bool,
}

pub struct MembershipState {
    config: Arc<NodeConfig>,
    greeting: Greeting,
    node_server: ActorRef<NodeServerMessage>,
    sessions: HashMap<NodeId, SessionRecord>,
    dialer: Dialer,
    resolved: HashMap<String, SocketAddr>,
    view: ClusterView,
    view_tx: watch::Sender<ClusterView>,
    fatal: mpsc::UnboundedSender<FatalError>,
    refused: HashSet<MemberId>,
    handshake_warnings: HashMap<String, Instant>,
}

impl Actor for Membership {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MembershipArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let config = args.config;
        let server = NodeServer::new(
            config.listen.port(),
            config.cookie.expose().to_string(),
            config.name.to_string(),
            config.advertise_host.clone(),
            None,
            Some(NodeConnectionMode::Transitive),
        )
        .with_listen_addr(config.listen.ip());
        let (node_server, _) = Actor::spawn_linked(None, server, (), myself.get_cell())
            .await
            .map_err(|error| {
                format!(
                    "cannot listen for cluster peers on {}: {error}",
                    config.listen
                )
            })?;
        node_server.cast(NodeServerMessage::SubscribeToEvents {
            id: "herd-membership".to_string(),
            subscription: Box::new(SessionRelay {
                membership: myself.clone(),
            }),
        })?;
        ractor::pg::join(groups::MEMBERSHIP.to_string(), vec![myself.get_cell()]);
        ractor::pg::monitor(groups::MEMBERSHIP.to_string(), myself.get_cell());

        let now = UnixMillis::now();
        let local = MemberInfo::from_greeting(&args.greeting, None, now);
        let mut view = ClusterView::alone(local);
        let dialer = Dialer::new(
            &config.seeds,
            config.cluster.reconnect_initial,
            config.cluster.reconnect_max,
            Instant::now(),
        );
        view.discovery_complete = dialer.seeds_tried();
        args.view.send_replace(view.clone());
        myself.send_interval(DIAL_TICK, || Mailbox::Local(MembershipLocal::DialTick));
        myself.cast(Mailbox::Local(MembershipLocal::DialTick))?;
        info!(node = %config.name, listen = %config.listen, advertise = %config.advertise_addr(), seeds = ?config.seeds, "membership started");
        Ok(MembershipState {
            config,
            greeting: args.greeting,
            node_server,
            sessions: HashMap::new(),
            dialer,
            resolved: HashMap::new(),
            view,
            view_tx: args.view,
            fatal: args.fatal,
            refused: HashSet::new(),
            handshake_warnings: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor(groups::MEMBERSHIP.to_string(), myself.get_id());
        state.node_server.stop(Some("node stopping".to_string()));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Mailbox::Local(MembershipLocal::Session(event)) => state.on_session(&myself, event),
            Mailbox::Local(MembershipLocal::CheckHandshake(event)) => state.check_handshake(event),
            Mailbox::Local(MembershipLocal::DialTick) => state.dial_due(&myself),
            Mailbox::Local(MembershipLocal::DialFinished { address, result }) => {
                state.on_dial_finished(address, result)
            }
            Mailbox::Cast(MembershipCast::Hello(greeting)) => state.on_hello(greeting),
            Mailbox::Cast(MembershipCast::Refused { by, reason }) => state.on_refused(by, reason),
            Mailbox::Cast(
                MembershipCast::Heartbeat { .. }
                | MembershipCast::HeartbeatAck { .. }
                | MembershipCast::Leaving { .. },
            ) => {}
            Mailbox::Call(request, _) => match request {},
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(protocol = frame.protocol, bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame from a peer");
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ProcessGroupChanged(GroupChangeMessage::Join(_, group, cells))
                if group == groups::MEMBERSHIP =>
            {
                for cell in cells.into_iter().filter(|cell| !cell.get_id().is_local()) {
                    state.greet(cell);
                }
            }
            SupervisionEvent::ActorFailed(cell, error)
                if cell.get_id() == state.node_server.get_id() =>
            {
                return Err(format!("the cluster node server failed: {error}").into());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if cell.get_id() == state.node_server.get_id() =>
            {
                return Err(format!("the cluster node server stopped: {reason:?}").into());
            }
            _ => {}
        }
        Ok(())
    }
}

impl MembershipState {
    fn publish(&mut self) {
        self.view.orchestrator = self.view.elect_orchestrator();
        self.view.discovery_complete = self.view.discovery_complete || self.dialer.seeds_tried();
        let up = self.view.up_members().count();
        metrics::gauge!("herd_cluster_nodes", "state" => "up").set(up as f64);
        let down = self
            .view
            .peers
            .values()
            .filter(|peer| peer.state != MemberState::Up)
            .count();
        metrics::gauge!("herd_cluster_nodes", "state" => "down").set(down as f64);
        self.view_tx.send_replace(self.view.clone());
    }

    // ---- sessions -----------------------------------------------------

    fn on_session(&mut self, myself: &ActorRef<MembershipMsg>, event: SessionEvent) {
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
        let herd_name = name.split('@').next().unwrap_or_default().to_string();
        if let Some(peer) = self.view.peers.values_mut().find(|peer| {
            peer.member.name.as_str() == herd_name
                && peer.state == MemberState::Up
                && peer.session.is_none()
        }) {
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
        let now = UnixMillis::now();
        let mut changed = false;
        for peer in self.view.peers.values_mut() {
            if peer.session == Some(event.node_id) && peer.state == MemberState::Up {
                warn!(peer = %peer.member, "peer disconnected; declaring it down");
                peer.state = MemberState::Down;
                peer.session = None;
                peer.state_since = now;
                changed = true;
            }
        }
        if changed {
            self.publish();
        }
    }

    /// An unauthenticated session closed a while ago. If a session to the
    /// same peer is up now, it was a redundant connection closed by ractor's
    /// election; otherwise the handshake failed.
    fn check_handshake(&mut self, event: SessionEvent) {
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
        self.warn_handshake_failure(&event);
    }

    fn warn_handshake_failure(&mut self, event: &SessionEvent) {
        // One warning per peer per minute: a misconfigured node redials often.
        let host = event
            .peer_addr
            .rsplit_once(':')
            .map_or(event.peer_addr.as_str(), |(host, _)| host);
        let key = event.peer_name.clone().unwrap_or_else(|| host.to_string());
        let now = Instant::now();
        let recently = self
            .handshake_warnings
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(60));
        if recently {
            debug!(peer = %event.peer_addr, "cluster handshake failed again");
            return;
        }
        self.handshake_warnings.insert(key, now);
        let direction = if event.inbound { "from" } else { "to" };
        warn!(
            peer = %event.peer_addr,
            "cluster connection {direction} {} closed before authentication: the peer uses a different cookie or is not a herd node; every node must share the same HERD_COOKIE",
            event.peer_addr
        );
    }

    fn address_connected(&self, address: &str) -> bool {
        let resolved = self.resolved.get(address).map(|addr| addr.to_string());
        self.sessions.values().any(|record| {
            record.authenticated
                && (record.event.connection_string.as_deref() == Some(address)
                    || resolved.as_deref() == Some(record.event.peer_addr.as_str()))
        }) || self
            .view
            .peers
            .values()
            .any(|peer| peer.state == MemberState::Up && peer.cluster_addr == address)
    }

    // ---- dialing ------------------------------------------------------

    fn dial_due(&mut self, myself: &ActorRef<MembershipMsg>) {
        let now = Instant::now();
        let own = self.config.advertise_addr();
        let connected: HashSet<String> = self.targets_connected();
        for address in self
            .dialer
            .due(now, |address| address == own || connected.contains(address))
        {
            let node_server = self.node_server.clone();
            let membership = myself.clone();
            tokio::spawn(async move {
                let result = dial(&node_server, &address).await;
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

    fn targets_connected(&self) -> HashSet<String> {
        let mut connected = HashSet::new();
        for address in self.resolved.keys().chain(self.config.seeds.iter()) {
            if self.address_connected(address) {
                connected.insert(address.clone());
            }
        }
        for peer in self.view.peers.values() {
            if self.address_connected(&peer.cluster_addr) {
                connected.insert(peer.cluster_addr.clone());
            }
        }
        connected
    }

    fn on_dial_finished(&mut self, address: String, result: Result<SocketAddr, String>) {
        let jitter = rand::rng().random::<f64>();
        let now = Instant::now();
        match result {
            Ok(resolved) => {
                debug!(%address, %resolved, "connected to peer; handshake under way");
                self.resolved.insert(address.clone(), resolved);
                self.dialer.finished(&address, true, jitter, now);
            }
            Err(reason) => {
                self.dialer.finished(&address, false, jitter, now);
                let failures = self.dialer.failures(&address);
                if failures == 1 || failures % 20 == 0 {
                    info!(%address, failures, %reason, "peer not reachable yet; retrying with backoff");
                } else {
                    debug!(%address, failures, %reason, "peer still not reachable");
                }
            }
        }
        if !self.view.discovery_complete && self.dialer.seeds_tried() {
            self.publish();
        }
    }

    // ---- greetings ----------------------------------------------------

    fn greet(&self, peer_membership: ActorCell) {
        let peer: ActorRef<MembershipMsg> = peer_membership.into();
        if let Err(error) = peer.cast(Mailbox::Cast(MembershipCast::Hello(self.greeting.clone()))) {
            debug!(%error, "could not greet a peer");
        }
    }

    /// The session to the node called `name`, found by its ractor name.
    fn session_named(&self, name: &str) -> Option<NodeId> {
        let prefix = format!("{name}@");
        self.sessions
            .values()
            .filter(|record| record.authenticated)
            .find(|record| {
                record
                    .event
                    .peer_name
                    .as_deref()
                    .is_some_and(|peer| peer.starts_with(&prefix))
            })
            .map(|record| record.event.node_id)
    }

    fn on_hello(&mut self, greeting: Greeting) {
        let local = self.greeting.member.clone();
        if greeting.member == local {
            return;
        }
        let session = self.session_named(greeting.member.name.as_str());
        if greeting.protocol_version != herd_protocol::PROTOCOL_VERSION {
            error!(peer = %greeting.member, theirs = greeting.protocol_version, ours = herd_protocol::PROTOCOL_VERSION, "refusing a peer that speaks another protocol version; run the same herd release on every node");
            self.refuse(
                &greeting.member,
                session,
                Refusal::ProtocolVersion {
                    ours: herd_protocol::PROTOCOL_VERSION,
                    theirs: greeting.protocol_version,
                },
            );
            return;
        }
        if greeting.member.name == local.name {
            if greeting.member.incarnation > local.incarnation {
                error!(peer = %greeting.member, "refusing a second node named {}; node names must be unique", local.name);
                self.refuse(
                    &greeting.member,
                    session,
                    Refusal::DuplicateName { existing: local },
                );
            } else {
                self.fail(FatalError::DuplicateName {
                    name: local.name.to_string(),
                    existing: greeting.member.to_string(),
                });
            }
            return;
        }
        if self.refused.contains(&greeting.member) {
            self.refuse(
                &greeting.member,
                session,
                Refusal::DuplicateName {
                    existing: greeting.member.clone(),
                },
            );
            return;
        }
        let now = UnixMillis::now();
        match self.view.peers.get(&greeting.member.name) {
            Some(known) if known.member.incarnation > greeting.member.incarnation => {
                debug!(peer = %greeting.member, "ignoring a greeting from an older incarnation");
                return;
            }
            Some(known) if known.member == greeting.member && known.state == MemberState::Up => {
                // A repeated greeting (both sides greet): refresh the session.
                if let Some(peer) = self.view.peers.get_mut(&greeting.member.name) {
                    peer.session = session.or(peer.session);
                }
                self.publish();
                return;
            }
            Some(known) if known.member != greeting.member => {
                info!(old = %known.member, new = %greeting.member, "peer restarted with a new incarnation");
            }
            _ => {}
        }
        info!(peer = %greeting.member, roles = ?greeting.roles, addr = %greeting.cluster_addr, "peer joined");
        self.dialer
            .add(&greeting.cluster_addr, false, Instant::now());
        self.view.peers.insert(
            greeting.member.name.clone(),
            MemberInfo::from_greeting(&greeting, session, now),
        );
        self.enforce_single_orchestrator();
        self.publish();
    }

    /// Refuses every up orchestrator but the senior one; stops this node if
    /// it is the junior.
    fn enforce_single_orchestrator(&mut self) {
        let Some(senior) = self.view.elect_orchestrator() else {
            return;
        };
        let juniors: Vec<MemberInfo> = self
            .view
            .up_members()
            .filter(|info| info.orchestrator_since.is_some() && info.member != senior)
            .cloned()
            .collect();
        for junior in juniors {
            if junior.member == self.greeting.member {
                self.fail(FatalError::SecondOrchestrator {
                    local: junior.member.to_string(),
                    existing: senior.to_string(),
                });
            } else {
                error!(refused = %junior.member, keeps = %senior, "refusing a second orchestrator; this release supports exactly one");
                self.refuse(
                    &junior.member,
                    junior.session,
                    Refusal::SecondOrchestrator {
                        existing: senior.clone(),
                    },
                );
            }
        }
    }

    /// Tells a peer why it is refused, then closes its session.
    fn refuse(&mut self, member: &MemberId, session: Option<NodeId>, reason: Refusal) {
        self.refused.insert(member.clone());
        if let Some(node_id) = session {
            let refusal = Mailbox::Cast(MembershipCast::Refused {
                by: self.greeting.member.clone(),
                reason,
            });
            for cell in ractor::pg::get_members(&groups::MEMBERSHIP.to_string()) {
                if matches!(cell.get_id(), ActorId::Remote { node_id: id, .. } if id == node_id) {
                    let peer: ActorRef<MembershipMsg> = cell.into();
                    let _ = peer.cast(refusal);
                    break;
                }
            }
            if let Some(record) = self.sessions.get(&node_id) {
                // Let the refusal reach the peer before the link closes.
                let session = record.event.session.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    session.stop(Some("refused by herd membership".to_string()));
                });
            }
        }
        if let Some(peer) = self
            .view
            .peers
            .get_mut(&member.name)
            .filter(|peer| &peer.member == member)
        {
            peer.state = MemberState::Left;
            peer.session = None;
            peer.state_since = UnixMillis::now();
        }
        self.publish();
    }

    fn on_refused(&mut self, by: MemberId, reason: Refusal) {
        match reason {
            Refusal::SecondOrchestrator { existing }
                if self.greeting.orchestrator_since.is_some()
                    && existing != self.greeting.member =>
            {
                self.fail(FatalError::SecondOrchestrator {
                    local: self.greeting.member.to_string(),
                    existing: existing.to_string(),
                });
            }
            Refusal::DuplicateName { existing } if existing.name == self.greeting.member.name => {
                self.fail(FatalError::DuplicateName {
                    name: existing.name.to_string(),
                    existing: existing.to_string(),
                });
            }
            Refusal::ProtocolVersion { ours, theirs } => {
                self.fail(FatalError::ProtocolVersion {
                    peer: by.to_string(),
                    theirs: ours,
                    ours: theirs,
                });
            }
            other => warn!(by = %by, reason = ?other, "a peer refused this node"),
        }
    }

    fn fail(&self, error: FatalError) {
        error!(%error, "this node cannot stay in the cluster");
        let _ = self.fatal.send(error);
    }
}

/// Resolves `address` and opens a cluster connection to it.
async fn dial(
    node_server: &ActorRef<NodeServerMessage>,
    address: &str,
) -> Result<SocketAddr, String> {
    let resolved = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::lookup_host(address))
        .await
        .map_err(|_| "name resolution timed out".to_string())?
        .map_err(|error| format!("cannot resolve: {error}"))?
        .next()
        .ok_or_else(|| "name resolved to no address".to_string())?;
    tokio::time::timeout(
        DIAL_TIMEOUT,
        ractor_cluster::client_connect(node_server, resolved),
    )
    .await
    .map_err(|_| "connection timed out".to_string())?
    .map_err(|error| match error {
        ractor_cluster::ClientConnectErr::Socket(io) => io.to_string(),
        other => other.to_string(),
    })?;
    Ok(resolved)
}
