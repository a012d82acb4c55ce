//! A mailbox type that can cross the cluster wire without ever panicking.
//!
//! ractor needs every remotely addressable message type to implement
//! [`ractor::Message`] with its own serialisation. The derive macro encodes
//! each field separately and cannot report a decode failure (ractor then drops
//! the message silently). Instead, every herd actor that peers talk to uses
//! `Mailbox<P>`: casts and requests are serde types encoded with
//! [`crate::codec`], local-only messages never leave the node, and a frame that
//! does not decode becomes [`Mailbox::Undecodable`], which the actor counts and
//! logs. A request that does not decode is answered with a `WireError`, so the
//! remote caller gets an error rather than a timeout.

use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;

/// The message vocabulary of one actor.
pub trait Protocol: Send + 'static {
    /// Name used in logs and metrics (`orchestrator`, `pool`, ...).
    const NAME: &'static str;
    /// One-way messages peers may send.
    type Cast: Serialize + DeserializeOwned + Send + 'static;
    /// Requests peers may make.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// Replies to requests. Must be able to carry a wire error.
    type Reply: Serialize + DeserializeOwned + Send + 'static + From<WireError>;
    /// Messages from actors on the same node only (timers, children).
    type Local: Send + 'static;
}

/// Everything an actor speaking protocol `P` can receive.
pub enum Mailbox<P: Protocol> {
    /// A one-way message from this node or a peer.
    Cast(P::Cast),
    /// A request; answer through the port.
    Call(P::Request, RpcReplyPort<P::Reply>),
    /// A message from this node only; never serialised.
    Local(P::Local),
    /// A frame from a peer that did not decode.
    Undecodable(UndecodableFrame),
}

impl<P: Protocol> std::fmt::Debug for Mailbox<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailbox::Cast(_) => write!(f, "Mailbox<{}>::Cast", P::NAME),
            Mailbox::Call(..) => write!(f, "Mailbox<{}>::Call", P::NAME),
            Mailbox::Local(_) => write!(f, "Mailbox<{}>::Local", P::NAME),
            Mailbox::Undecodable(frame) => write!(f, "Mailbox<{}>::{frame:?}", P::NAME),
        }
    }
}

/// A peer's frame this node could not decode.
#[derive(Debug, Clone)]
pub struct UndecodableFrame {
    /// Which protocol it was addressed to.
    pub protocol: &'static str,
    /// The ractor variant tag it carried.
    pub variant: String,
    /// Its size.
    pub bytes: usize,
    /// The decoder's complaint.
    pub error: String,
}

/// A request failed on the wire rather than in the handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
pub enum WireError {
    /// The receiver could not decode the request (version skew or corruption).
    #[error("the receiving node could not decode the request: {0}")]
    UndecodableRequest(String),
    /// The caller could not decode the reply.
    #[error("the reply could not be decoded: {0}")]
    UndecodableReply(String),
}

const CAST_TAG: &str = "cast";
const CALL_TAG: &str = "call";

impl<P: Protocol> ractor::Message for Mailbox<P> {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            Mailbox::Cast(cast) => Ok(SerializedMessage::Cast {
                variant: CAST_TAG.to_string(),
                args: encode_or_log::<P, _>(&cast)?,
                metadata: None,
            }),
            Mailbox::Call(request, typed_port) => {
                let args = encode_or_log::<P, _>(&request)?;
                Ok(SerializedMessage::Call {
                    variant: CALL_TAG.to_string(),
                    args,
                    reply: bytes_port_feeding::<P>(typed_port),
                    metadata: None,
                })
            }
            // Local messages and decode failures never leave the node.
            Mailbox::Local(_) | Mailbox::Undecodable(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        Ok(match message {
            SerializedMessage::Cast { variant, args, .. } if variant == CAST_TAG => {
                match codec::decode::<P::Cast>(&args) {
                    Ok(cast) => Mailbox::Cast(cast),
                    Err(error) => undecodable::<P>(variant, args.len(), error.to_string()),
                }
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == CALL_TAG => match codec::decode::<P::Request>(&args) {
                Ok(request) => Mailbox::Call(request, typed_port_feeding::<P>(reply)),
                Err(error) => {
                    let wire_error =
                        P::Reply::from(WireError::UndecodableRequest(error.to_string()));
                    if let Ok(bytes) = codec::encode(&wire_error) {
                        let _ = reply.send(bytes);
                    }
                    undecodable::<P>(variant, args.len(), error.to_string())
                }
            },
            SerializedMessage::Cast { variant, args, .. } => {
                undecodable::<P>(variant, args.len(), "unknown cast variant".to_string())
            }
            SerializedMessage::Call { variant, args, .. } => {
                undecodable::<P>(variant, args.len(), "unknown call variant".to_string())
            }
            SerializedMessage::CallReply(_, bytes) => undecodable::<P>(
                "reply".to_string(),
                bytes.len(),
                "a call reply addressed to an actor".to_string(),
            ),
        })
    }
}

fn undecodable<P: Protocol>(variant: String, bytes: usize, error: String) -> Mailbox<P> {
    Mailbox::Undecodable(UndecodableFrame {
        protocol: P::NAME,
        variant,
        bytes,
        error,
    })
}

fn encode_or_log<P: Protocol, T: Serialize>(value: &T) -> Result<Vec<u8>, BoxedDowncastErr> {
    codec::encode(value).map_err(|error| {
        tracing::error!(protocol = P::NAME, %error, "message could not be encoded for a peer");
        BoxedDowncastErr
    })
}

/// On the caller's node: a bytes port whose answer is decoded into the typed
/// port the caller is waiting on.
fn bytes_port_feeding<P: Protocol>(typed_port: RpcReplyPort<P::Reply>) -> RpcReplyPort<Vec<u8>> {
    let timeout = typed_port.get_timeout();
    let (bytes_sender, bytes_receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
    tokio::spawn(async move {
        let bytes = match timeout {
            Some(limit) => match tokio::time::timeout(limit, bytes_receiver).await {
                Ok(Ok(bytes)) => bytes,
                _ => return,
            },
            None => match bytes_receiver.await {
                Ok(bytes) => bytes,
                Err(_) => return,
            },
        };
        let reply = codec::decode::<P::Reply>(&bytes)
            .unwrap_or_else(|error| P::Reply::from(WireError::UndecodableReply(error.to_string())));
        let _ = typed_port.send(reply);
    });
    match timeout {
        Some(limit) => RpcReplyPort::from((bytes_sender, limit)),
        None => RpcReplyPort::from(bytes_sender),
    }
}

/// On the callee's node: a typed port for the handler whose answer is encoded
/// and sent back through the session's bytes port.
fn typed_port_feeding<P: Protocol>(bytes_port: RpcReplyPort<Vec<u8>>) -> RpcReplyPort<P::Reply> {
    let timeout = bytes_port.get_timeout();
    let (typed_sender, typed_receiver) = ractor::concurrency::oneshot::<P::Reply>();
    tokio::spawn(async move {
        let reply = match timeout {
            Some(limit) => match tokio::time::timeout(limit, typed_receiver).await {
                Ok(Ok(reply)) => reply,
                _ => return,
            },
            None => match typed_receiver.await {
                Ok(reply) => reply,
                Err(_) => return,
            },
        };
        match codec::encode(&reply) {
            Ok(bytes) => {
                let _ = bytes_port.send(bytes);
            }
            Err(error) => {
                tracing::error!(protocol = P::NAME, %error, "reply could not be encoded");
            }
        }
    });
    match timeout {
        Some(limit) => RpcReplyPort::from((typed_sender, limit)),
        None => RpcReplyPort::from(typed_sender),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::Message;
    use serde::Deserialize;

    struct TestProtocol;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum TestCast {
        Ping(u32),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum TestReply {
        Pong(u32),
        Wire(WireError),
    }

    impl From<WireError> for TestReply {
        fn from(error: WireError) -> Self {
            TestReply::Wire(error)
        }
    }

    impl Protocol for TestProtocol {
        const NAME: &'static str = "test";
        type Cast = TestCast;
        type Request = u32;
        type Reply = TestReply;
        type Local = ();
    }

    #[test]
    fn casts_round_trip_and_garbage_becomes_undecodable() {
        let serialized = Mailbox::<TestProtocol>::Cast(TestCast::Ping(7))
            .serialize()
            .unwrap();
        match Mailbox::<TestProtocol>::deserialize(serialized).unwrap() {
            Mailbox::Cast(TestCast::Ping(7)) => {}
            other => panic!("unexpected {other:?}"),
        }
        let garbage = SerializedMessage::Cast {
            variant: CAST_TAG.to_string(),
            args: vec![0xff, 0xfe, 0xfd],
            metadata: None,
        };
        match Mailbox::<TestProtocol>::deserialize(garbage).unwrap() {
            Mailbox::Undecodable(frame) => {
                assert_eq!(frame.protocol, "test");
                assert_eq!(frame.bytes, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn local_messages_refuse_to_serialize() {
        assert!(Mailbox::<TestProtocol>::Local(()).serialize().is_err());
    }

    #[tokio::test]
    async fn calls_bridge_replies_through_bytes_and_answer_garbage_with_an_error() {
        let (typed_sender, typed_receiver) = ractor::concurrency::oneshot::<TestReply>();
        let serialized = Mailbox::<TestProtocol>::Call(41, typed_sender.into())
            .serialize()
            .unwrap();
        // The callee side decodes it and answers through the typed port.
        match Mailbox::<TestProtocol>::deserialize(serialized).unwrap() {
            Mailbox::Call(request, port) => port.send(TestReply::Pong(request + 1)).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(typed_receiver.await.unwrap(), TestReply::Pong(42));

        let (bytes_sender, bytes_receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
        let garbage = SerializedMessage::Call {
            variant: CALL_TAG.to_string(),
            args: vec![0xff; 40],
            reply: bytes_sender.into(),
            metadata: None,
        };
        assert!(matches!(
            Mailbox::<TestProtocol>::deserialize(garbage).unwrap(),
            Mailbox::Undecodable(_)
        ));
        let answer: TestReply = codec::decode(&bytes_receiver.await.unwrap()).unwrap();
        assert!(matches!(
            answer,
            TestReply::Wire(WireError::UndecodableRequest(_))
        ));
    }
}
