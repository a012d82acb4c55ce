//! The membership actor: state and message routing. The behaviour lives in
//! `connections` (sessions and dialing), `greetings` (who may join),
//! `liveness` (heartbeats to the peers this node watches, declaring down),
//! `reporting` (unreachability reports and their quorum), `leaving`,
//! `leadership` (raft leaders' claims) and `own_group` (this node's replica
//! group, and leaving when an older group is in sight).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_config::NodeConfig;
use herd_protocol::messages::membership::{Greeting, MembershipCast};
use herd_protocol::messages::replica::ReplicaGroupId;
use herd_protocol::messages::{NoReply, NoRequest, groups};
use herd_protocol::{Mailbox, MemberId, NodeName, Protocol, UnixMillis};
use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeId, NodeServer, NodeServerMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::dialer::Dialer;
use super::failure_detector::PhiAccrualDetector;
use super::sessions::{SessionEvent, SessionRelay};
use super::unreachability::Unreachability;
use super::view::{ClusterView, LeaderClaim, MemberInfo};
use crate::runtime::NodeEvent;
use crate::tls::ClusterTls;

/// Longest an inbound cluster connection may take to authenticate before
/// the gate closes it.
const CLUSTER_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// Most inbound cluster connections that may be unauthenticated at once;
/// more are closed on accept. Far above what a cluster's own nodes open at
/// once (each dials each other node once), far below the descriptor limit.
const CLUSTER_MAX_UNAUTHENTICATED: usize = 64;

/// Largest frame an inbound cluster connection may send before it
/// authenticates. The handshake's frames take a few hundred bytes; the
/// 16 MiB ractor_cluster otherwise accepts is for authenticated peers.
const CLUSTER_MAX_FRAME_BEFORE_AUTH: u64 = 64 * 1024;

/// How often due dials are started.
pub(super) const DIAL_TICK: Duration = Duration::from_millis(100);

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
    /// A session closed before authenticating; decide after a grace period
    /// whether it lost ractor's duplicate-connection election (harmless) or
    /// failed the cookie handshake.
    CheckHandshake(SessionEvent),
    /// The session of a peer closed while other connections were still
    /// authenticating: one of them may be the same peer's surviving
    /// session. Declare it down now unless one is.
    CheckClosedPeer {
        /// The peer.
        member: MemberId,
        /// Its ractor_cluster name (one per process).
        peer_name: Option<String>,
    },
    /// Start due dials.
    DialTick,
    /// A dial ended.
    DialFinished {
        /// The address dialed.
        address: String,
        /// The resolved socket address, or why it failed.
        result: Result<SocketAddr, super::connections::DialFailure>,
    },
    /// Send heartbeats to the peers this node watches and judge them.
    HeartbeatTick,
    /// Judge the watched peers now: one is due to cross its detector's
    /// threshold before the next tick.
    Judge,
    /// Tell every peer this node is leaving; answer once told.
    Leave(oneshot::Sender<()>),
    /// This node's replica leads `term` and runs the orchestrator
    /// (`leading`), or stopped leading it: claim it to every peer.
    Leadership {
        /// The Raft term.
        term: u64,
        /// Whether this node leads it.
        leading: bool,
        /// The group its replica leads (named before it leads).
        group: Option<ReplicaGroupId>,
    },
    /// This node's replica learned its group from the log (or a snapshot).
    ReplicaGroup(ReplicaGroupId),
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
    pub events: mpsc::UnboundedSender<NodeEvent>,
    /// Mutual TLS for the cluster port and every dial, if configured.
    pub cluster_tls: Option<ClusterTls>,
    /// This node's replica's group, as its log names it (raft replication,
    /// orchestrator role).
    pub replica_group: Option<watch::Receiver<Option<ReplicaGroupId>>>,
}

/// The membership actor.
pub struct Membership;

/// What the membership actor tracks about one session.
#[derive(Debug)]
pub(super) struct SessionRecord {
    pub(super) event: SessionEvent,
    pub(super) authenticated: bool,
}

pub struct MembershipState {
    pub(super) config: Arc<NodeConfig>,
    pub(super) greeting: Greeting,
    pub(super) node_server: ActorRef<NodeServerMessage>,
    /// Set when the cluster transport runs over mutual TLS.
    pub(super) cluster_tls: Option<ClusterTls>,
    /// The cluster port's accept loop; aborted when membership stops.
    pub(super) gate: tokio::task::AbortHandle,
    pub(super) sessions: HashMap<NodeId, SessionRecord>,
    pub(super) dialer: Dialer,
    pub(super) resolved: HashMap<String, SocketAddr>,
    pub(super) view: ClusterView,
    pub(super) view_tx: watch::Sender<ClusterView>,
    pub(super) events: mpsc::UnboundedSender<NodeEvent>,
    pub(super) refused: HashSet<MemberId>,
    pub(super) handshake_warnings: HashMap<String, Instant>,
    /// One failure detector per peer this node watches (its subjects on
    /// the ring), per incarnation.
    pub(super) detectors: HashMap<MemberId, PhiAccrualDetector>,
    /// Unreachability reports, this node's and its peers'.
    pub(super) unreachability: Unreachability,
    /// When the last heartbeat tick ran, to notice this node's own pauses.
    pub(super) last_tick: Instant,
    /// When a watcher's heartbeat last arrived, to notice being cut off.
    pub(super) last_heartbeat_in: Instant,
    /// When a judgement between ticks is scheduled, if one is.
    pub(super) judge_at: Option<Instant>,
    /// Incarnations this node declared down; as orchestrator it makes them
    /// rejoin under a new incarnation.
    pub(super) declared_down: HashSet<MemberId>,
    pub(super) heartbeat_sequence: u64,
    pub(super) heartbeats_sent: HashMap<u64, Instant>,
    pub(super) leaving: bool,
    /// This node's own leadership claim (raft replication), re-sent to
    /// peers it greets later.
    pub(super) own_claim: Option<LeaderClaim>,
    /// Told once every peer acknowledged this node's leaving.
    pub(super) leave_waiter: Option<(oneshot::Sender<()>, HashSet<NodeName>)>,
    /// Forwards this node's replica group when its log names it; aborted
    /// when membership stops.
    pub(super) group_forwarder: Option<tokio::task::AbortHandle>,
    /// Set once this node found its replica group younger than another in
    /// sight and reported it (so it is reported once).
    pub(super) leaving_younger_group: bool,
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
        // herd's gate owns the cluster port (see `gate`); ractor_cluster's
        // own listener gets an ephemeral loopback port nobody is told of.
        let cluster_listener =
            tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|error| {
                    format!(
                        "cannot listen for cluster peers on {}: {error}",
                        config.listen
                    )
                })?;
        let cluster_port = cluster_listener.local_addr()?.port();
        let loopback: std::net::IpAddr = if config.listen.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        // ractor_cluster's transitive mode dials the peers of a peer itself,
        // always in plain text; with cluster TLS herd passes peer addresses
        // on and dials them (see `discovery`).
        let connection_mode = match args.cluster_tls {
            Some(_) => NodeConnectionMode::Isolated,
            None => NodeConnectionMode::Transitive,
        };
        let server = NodeServer::new(
            0,
            config.cookie.expose().to_string(),
            super::sessions::session_name(&args.greeting.member),
            config.advertise_host.clone(),
            None,
            Some(connection_mode),
        )
        .with_listen_addr(loopback);
        let (node_server, _) = Actor::spawn_linked(None, server, (), myself.get_cell())
            .await
            .map_err(|error| format!("cannot start the cluster node server: {error}"))?;
        // Peers learn this node's address from its handshake: the gate's
        // port, not the loopback one (this lands after the listener's own
        // port notice, which it sent while the server started).
        node_server.cast(NodeServerMessage::PortChanged { port: cluster_port })?;
        let (gate_relay, gate) = super::gate::start(
            cluster_listener,
            node_server.clone(),
            super::gate::GateLimits {
                deadline: CLUSTER_HANDSHAKE_DEADLINE,
                max_pending: CLUSTER_MAX_UNAUTHENTICATED,
                max_frame_before_auth: CLUSTER_MAX_FRAME_BEFORE_AUTH,
            },
            args.cluster_tls.as_ref().map(|tls| tls.acceptor().clone()),
        );
        node_server.cast(NodeServerMessage::SubscribeToEvents {
            id: "herd-gate".to_string(),
            subscription: Box::new(gate_relay),
        })?;
        node_server.cast(NodeServerMessage::SubscribeToEvents {
            id: "herd-membership".to_string(),
            subscription: Box::new(SessionRelay {
                membership: myself.clone(),
            }),
        })?;
        ractor::pg::join(groups::MEMBERSHIP.to_string(), vec![myself.get_cell()]);
        ractor::pg::monitor(groups::MEMBERSHIP.to_string(), myself.get_cell());

        let mut greeting = args.greeting;
        let group_forwarder = args.replica_group.map(|mut group| {
            greeting.replica_group = group.borrow_and_update().clone();
            super::own_group::forward(group, myself.clone())
        });
        let now = UnixMillis::now();
        let local = MemberInfo::from_greeting(&greeting, None, now);
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
        myself.send_interval(config.cluster.failure_detector.heartbeat_interval, || {
            Mailbox::Local(MembershipLocal::HeartbeatTick)
        });
        myself.cast(Mailbox::Local(MembershipLocal::DialTick))?;
        info!(listen = %config.listen, advertise = %config.advertise_addr(), seeds = ?config.seeds, tls = args.cluster_tls.is_some(), "membership started");
        let local_member = greeting.member.clone();
        Ok(MembershipState {
            config,
            greeting,
            node_server,
            cluster_tls: args.cluster_tls,
            gate,
            sessions: HashMap::new(),
            dialer,
            resolved: HashMap::new(),
            view,
            view_tx: args.view,
            events: args.events,
            refused: HashSet::new(),
            handshake_warnings: HashMap::new(),
            detectors: HashMap::new(),
            unreachability: Unreachability::new(local_member),
            last_tick: Instant::now(),
            last_heartbeat_in: Instant::now(),
            judge_at: None,
            declared_down: HashSet::new(),
            heartbeat_sequence: 0,
            heartbeats_sent: HashMap::new(),
            leaving: false,
            own_claim: None,
            leave_waiter: None,
            group_forwarder,
            leaving_younger_group: false,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor(groups::MEMBERSHIP.to_string(), myself.get_id());
        state.gate.abort();
        if let Some(forwarder) = &state.group_forwarder {
            forwarder.abort();
        }
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
            Mailbox::Local(MembershipLocal::CheckClosedPeer { member, peer_name }) => {
                state.check_closed_peer(&member, peer_name.as_deref())
            }
            Mailbox::Local(MembershipLocal::DialTick) => state.dial_due(&myself),
            Mailbox::Local(MembershipLocal::DialFinished { address, result }) => {
                state.on_dial_finished(address, result)
            }
            Mailbox::Local(MembershipLocal::HeartbeatTick) => state.heartbeat_tick(&myself),
            Mailbox::Local(MembershipLocal::Judge) => state.judge_tick(&myself),
            Mailbox::Local(MembershipLocal::Leave(done)) => state.leave(done),
            Mailbox::Local(MembershipLocal::Leadership {
                term,
                leading,
                group,
            }) => {
                // Learned before the claim, so the claim and this node's
                // greeting name the same group.
                if let Some(group) = group {
                    state.learn_own_group(group);
                }
                state.claim_leadership(term, leading)
            }
            Mailbox::Local(MembershipLocal::ReplicaGroup(group)) => state.learn_own_group(group),
            Mailbox::Cast(MembershipCast::Hello(greeting)) => {
                let member = greeting.member.clone();
                state.on_hello(greeting);
                state.share_peers(&member);
                state.share_leadership(&member);
            }
            Mailbox::Cast(MembershipCast::Leader {
                member,
                term,
                leading,
                group,
            }) => state.on_leader_claim(LeaderClaim {
                member,
                term,
                leading,
                group,
            }),
            Mailbox::Cast(MembershipCast::Peers { addresses }) => state.on_peers(addresses),
            Mailbox::Cast(MembershipCast::Refused { by, reason }) => state.on_refused(by, reason),
            Mailbox::Cast(MembershipCast::Heartbeat { from, sequence }) => {
                state.on_heartbeat(from, sequence)
            }
            Mailbox::Cast(MembershipCast::HeartbeatAck { from, sequence }) => {
                state.on_heartbeat_ack(from, sequence)
            }
            Mailbox::Cast(MembershipCast::Unreachable {
                subject,
                by,
                silence_ms,
            }) => state.on_unreachable(subject, by, Duration::from_millis(silence_ms)),
            Mailbox::Cast(MembershipCast::Reachable { subject, by }) => {
                state.on_reachable(subject, by)
            }
            Mailbox::Cast(MembershipCast::Leaving { member }) => state.on_leaving(member),
            Mailbox::Cast(MembershipCast::LeavingAck { from }) => state.on_leaving_ack(from),
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
                    state.greet(cell.into());
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
    /// Publishes the view to every local component.
    pub(super) fn publish(&mut self) {
        use herd_protocol::messages::orchestrator::MemberState;
        self.view.orchestrator = self.view.elect_orchestrator();
        self.view.discovery_complete = self.view.discovery_complete || self.dialer.seeds_tried();
        for (label, state) in [
            ("up", MemberState::Up),
            ("suspect", MemberState::Suspect),
            ("down", MemberState::Down),
            ("left", MemberState::Left),
        ] {
            let count = self
                .view
                .peers
                .values()
                .filter(|peer| peer.state == state)
                .count()
                + usize::from(state == MemberState::Up);
            metrics::gauge!("herd_cluster_nodes", "state" => label).set(count as f64);
        }
        self.view_tx.send_replace(self.view.clone());
    }

    /// The membership actors of all peers, by session: one look-up of the
    /// process group for a round of casts.
    pub(super) fn peer_memberships(&self) -> HashMap<NodeId, ActorRef<MembershipMsg>> {
        ractor::pg::get_members(&groups::MEMBERSHIP.to_string())
            .into_iter()
            .filter_map(|cell| match cell.get_id() {
                ractor::ActorId::Remote { node_id, .. } => Some((node_id, ActorRef::from(cell))),
                ractor::ActorId::Local(_) => None,
            })
            .collect()
    }

    /// The membership actor of the peer on session `node_id`.
    pub(super) fn peer_membership(&self, node_id: NodeId) -> Option<ActorRef<MembershipMsg>> {
        ractor::pg::get_members(&groups::MEMBERSHIP.to_string())
            .into_iter()
            .find(|cell| matches!(cell.get_id(), ractor::ActorId::Remote { node_id: id, .. } if id == node_id))
            .map(ActorRef::from)
    }

    /// Reports a condition that forces this node to stop.
    pub(super) fn fail(&self, error: crate::runtime::FatalError) {
        tracing::error!(%error, "this node cannot stay in the cluster");
        let _ = self.events.send(NodeEvent::Fatal(error));
    }
}
