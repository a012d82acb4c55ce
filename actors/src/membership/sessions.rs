//! Relays ractor_cluster session events into the membership actor's mailbox.

use ractor::ActorRef;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeId, NodeSessionMessage};

use super::actor::{MembershipLocal, MembershipMsg};
use herd_protocol::Mailbox;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// TCP connected, handshake starting.
    Opened,
    /// The cookie handshake succeeded.
    Authenticated,
    /// Process groups are synchronised.
    Ready,
    /// The session ended.
    Closed,
}

/// A session event with what is known about the peer.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    /// What happened.
    pub change: SessionChange,
    /// ractor_cluster's id for the session.
    pub node_id: NodeId,
    /// The peer's ractor name (`name@host`), once known.
    pub peer_name: Option<String>,
    /// The peer's advertised `host:port`, once known.
    pub connection_string: Option<String>,
    /// The socket address of the other end.
    pub peer_addr: String,
    /// True for connections the peer opened.
    pub inbound: bool,
    /// The session actor (to stop it).
    pub session: ActorRef<NodeSessionMessage>,
}

/// Subscription handed to the `NodeServer`.
pub struct SessionRelay {
    pub membership: ActorRef<MembershipMsg>,
}

impl SessionRelay {
    fn relay(&self, change: SessionChange, info: NodeServerSessionInformation) {
        let event = SessionEvent {
            change,
            node_id: info.node_id,
            peer_name: info.peer_name.as_ref().map(|name| name.name.clone()),
            connection_string: info
                .peer_name
                .as_ref()
                .map(|name| name.connection_string.clone()),
            peer_addr: info.peer_addr,
            inbound: info.is_server,
            session: info.actor,
        };
        let _ = self
            .membership
            .cast(Mailbox::Local(MembershipLocal::Session(event)));
    }
}

impl NodeEventSubscription for SessionRelay {
    fn node_session_opened(&self, info: NodeServerSessionInformation) {
        self.relay(SessionChange::Opened, info);
    }

    fn node_session_disconnected(&self, info: NodeServerSessionInformation) {
        self.relay(SessionChange::Closed, info);
    }

    fn node_session_authenticated(&self, info: NodeServerSessionInformation) {
        self.relay(SessionChange::Authenticated, info);
    }

    fn node_session_ready(&self, info: NodeServerSessionInformation) {
        self.relay(SessionChange::Ready, info);
    }
}
