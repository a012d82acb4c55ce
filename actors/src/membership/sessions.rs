//! Relays ractor_cluster session events into the membership actor's mailbox.

use ractor::ActorRef;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeId, NodeSessionMessage};

use super::actor::{MembershipLocal, MembershipMsg};
use herd_protocol::{Mailbox, MemberId};

/// The name this process gives ractor_cluster: its herd name and the
/// incarnation it started with (`n2#1712…`; ractor_cluster appends
/// `@host`). ractor_cluster keeps one session per peer *name* and stops the
/// others, so a second process claiming a herd name, even on the same host,
/// would have its session displace the real node's before herd could refuse
/// it; with a name per process, both sessions stand and herd decides.
pub fn session_name(member: &MemberId) -> String {
    member.to_string()
}

/// The herd node name inside a ractor_cluster peer name (`n2#1712…@host`).
pub fn herd_name_of(peer_name: &str) -> &str {
    peer_name.split(['#', '@']).next().unwrap_or_default()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::{Incarnation, NodeName};

    #[test]
    fn the_herd_name_is_read_back_from_the_session_name_ractor_reports() {
        let member = MemberId {
            name: NodeName::parse("worker-2").unwrap(),
            incarnation: Incarnation(1_712_345_678_901),
        };
        let reported = format!("{}@10.0.0.7", session_name(&member));
        assert_eq!(reported, "worker-2#1712345678901@10.0.0.7");
        assert_eq!(herd_name_of(&reported), "worker-2");
        // A peer of an older release names itself `name@host`.
        assert_eq!(herd_name_of("n2@127.0.0.1"), "n2");
    }
}
