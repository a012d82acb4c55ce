//! A small frame limit for cluster connections that have not authenticated.
//!
//! ractor_cluster frames are a big-endian `u64` length followed by that many
//! bytes, and it accepts frames of up to 16 MiB from anyone, before the
//! cookie handshake: a stranger on the cluster port could make each of the
//! gate's unauthenticated connections buffer 16 MiB until the handshake
//! deadline. The handshake's own frames (name, status, challenge, challenge
//! reply) are under a few hundred bytes.
//!
//! [`PreauthFrames`] reads an accepted connection on behalf of its session
//! and follows the frame lengths until the connection authenticates. A frame
//! announcing more than the limit fails the read (ractor_cluster then closes
//! the session) — unless authentication is confirmed within a short grace:
//! the gate learns of it from the `NodeServer` a moment after the peer may
//! already send its first (possibly large) post-handshake frame, and such a
//! frame must not cost a real peer its connection. Once authenticated, the
//! reader passes bytes through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tracing::warn;

/// How long an oversized frame waits for the news that the connection
/// authenticated before it closes the connection. Covers the `NodeServer`'s
/// lag in reporting an authentication, far under the handshake deadline.
const AUTHENTICATION_GRACE: Duration = Duration::from_millis(500);

/// A frame announced more bytes than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The length the frame announced.
    pub announced: u64,
}

/// Follows the frame boundaries of a ractor_cluster byte stream, fed in
/// arbitrary pieces. Pure.
#[derive(Debug, Clone, Default)]
pub struct FrameLengths {
    /// Bytes of the current length prefix seen so far (0..8).
    prefix: [u8; 8],
    prefix_seen: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
}

impl FrameLengths {
    /// Takes the next bytes of the stream; fails on the first frame whose
    /// length prefix announces more than `limit` bytes. A frame of exactly
    /// `limit` bytes passes.
    pub fn feed(&mut self, mut bytes: &[u8], limit: u64) -> Result<(), Oversized> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skipped = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= skipped as u64;
                bytes = &bytes[skipped..];
                continue;
            }
            let taken = (8 - self.prefix_seen).min(bytes.len());
            self.prefix[self.prefix_seen..self.prefix_seen + taken]
                .copy_from_slice(&bytes[..taken]);
            self.prefix_seen += taken;
            bytes = &bytes[taken..];
            if self.prefix_seen == 8 {
                self.prefix_seen = 0;
                let announced = u64::from_be_bytes(self.prefix);
                if announced > limit {
                    return Err(Oversized { announced });
                }
                self.payload_left = announced;
            }
        }
        Ok(())
    }
}

/// Whether a pending oversized frame's connection authenticated in time.
type Verdict = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The read half of an accepted cluster connection, limiting frame sizes
/// until `authenticated` turns true. Guarantees: before authentication no
/// frame over the limit reaches the session (the read fails instead, after
/// at most [`AUTHENTICATION_GRACE`]); after it, every byte passes through
/// unchanged and in order, at the cost of one flag check per read.
pub struct PreauthFrames<R> {
    inner: R,
    peer: String,
    limit: u64,
    authenticated: watch::Receiver<bool>,
    /// Authentication was seen: plain pass-through from now on.
    released: bool,
    frames: FrameLengths,
    /// Bytes read from `inner` and held back while a verdict is pending.
    held: Vec<u8>,
    held_from: usize,
    verdict: Option<Verdict>,
}

impl<R> PreauthFrames<R> {
    /// Wraps `inner`, the connection from `peer` (for the log), allowing
    /// frames of at most `limit` bytes until `authenticated` turns true.
    /// A dropped sender means the connection will never authenticate.
    pub fn new(inner: R, peer: String, limit: u64, authenticated: watch::Receiver<bool>) -> Self {
        PreauthFrames {
            inner,
            peer,
            limit,
            authenticated,
            released: false,
            frames: FrameLengths::default(),
            held: Vec::new(),
            held_from: 0,
            verdict: None,
        }
    }

    /// Hands held-back bytes to the caller; true if there were any.
    fn drain_held(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.held_from >= self.held.len() {
            return false;
        }
        let count = buf.remaining().min(self.held.len() - self.held_from);
        buf.put_slice(&self.held[self.held_from..self.held_from + count]);
        self.held_from += count;
        if self.held_from == self.held.len() {
            self.held = Vec::new();
            self.held_from = 0;
        }
        true
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for PreauthFrames<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(verdict) = this.verdict.as_mut() {
            if !ready!(verdict.as_mut().poll(cx)) {
                // Every later read fails too; the held bytes never pass.
                this.held = Vec::new();
                this.verdict = Some(Box::pin(std::future::ready(false)));
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "cluster frame over the limit before authentication",
                )));
            }
            this.verdict = None;
            this.released = true;
        }
        if this.drain_held(buf) {
            return Poll::Ready(Ok(()));
        }
        if !this.released && *this.authenticated.borrow() {
            this.released = true;
        }
        if this.released {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Err(oversized) = this.frames.feed(&buf.filled()[before..], this.limit) else {
            return Poll::Ready(Ok(()));
        };
        // Hold the bytes back: the session must not start on this frame
        // unless the connection turns out to be authenticated.
        this.held = buf.filled()[before..].to_vec();
        this.held_from = 0;
        buf.set_filled(before);
        let mut authenticated = this.authenticated.clone();
        let (peer, limit) = (this.peer.clone(), this.limit);
        this.verdict = Some(Box::pin(async move {
            let in_time = tokio::time::timeout(
                AUTHENTICATION_GRACE,
                authenticated.wait_for(|authenticated| *authenticated),
            )
            .await;
            let authenticated = matches!(in_time, Ok(Ok(_)));
            if !authenticated {
                warn!(%peer, announced = oversized.announced, limit, "cluster connection closed: a frame before authentication announced more bytes than a handshake needs");
            }
            authenticated
        }));
        Pin::new(this).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(length: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_split() {
        let mut stream = frame(3, b"abc");
        stream.extend(frame(0, b""));
        stream.extend(frame(10, &[7; 10]));
        stream.extend(frame(4, b"wxyz"));
        for piece in 1..=stream.len() {
            let mut frames = FrameLengths::default();
            for chunk in stream.chunks(piece) {
                assert_eq!(frames.feed(chunk, 10), Ok(()), "pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_frame_of_exactly_the_limit_passes_and_one_byte_more_does_not() {
        let mut frames = FrameLengths::default();
        assert_eq!(frames.feed(&frame(64, &[0; 64]), 64), Ok(()));
        assert_eq!(
            frames.feed(&frame(65, &[]), 64),
            Err(Oversized { announced: 65 })
        );
    }

    #[test]
    fn an_oversized_prefix_split_across_reads_is_caught_on_its_last_byte() {
        let mut frames = FrameLengths::default();
        let mut stream = frame(2, b"ok");
        stream.extend(frame(10 * 1024 * 1024, &[]));
        let (head, last) = stream.split_at(stream.len() - 1);
        for byte in head {
            assert_eq!(frames.feed(std::slice::from_ref(byte), 1024), Ok(()));
        }
        assert_eq!(
            frames.feed(last, 1024),
            Err(Oversized {
                announced: 10 * 1024 * 1024
            })
        );
    }

    #[test]
    fn a_huge_announced_length_is_refused_without_overflow() {
        let mut frames = FrameLengths::default();
        assert_eq!(
            frames.feed(&u64::MAX.to_be_bytes(), 1024),
            Err(Oversized {
                announced: u64::MAX
            })
        );
    }

    #[tokio::test]
    async fn an_oversized_frame_before_authentication_fails_the_read_after_the_grace() {
        tokio::time::pause();
        let (mut peer, ours) = tokio::io::duplex(1024);
        let (_authenticated_tx, authenticated) = watch::channel(false);
        let mut reader = PreauthFrames::new(ours, "stranger".into(), 1024, authenticated);
        peer.write_all(&frame(3, b"abc")).await.unwrap();
        peer.write_all(&frame(1 << 20, b"start")).await.unwrap();
        let mut small = [0u8; 11];
        reader.read_exact(&mut small).await.unwrap();
        assert_eq!(&small[8..], b"abc");
        let started = tokio::time::Instant::now();
        let error = reader.read_u64().await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(started.elapsed() >= AUTHENTICATION_GRACE);
        assert!(
            reader.read_u8().await.is_err(),
            "the connection stays failed"
        );
    }

    #[tokio::test]
    async fn an_oversized_frame_racing_the_authentication_news_passes_whole() {
        tokio::time::pause();
        let (mut peer, ours) = tokio::io::duplex(4096);
        let (authenticated_tx, authenticated) = watch::channel(false);
        let mut reader = PreauthFrames::new(ours, "peer".into(), 8, authenticated);
        let big = frame(100, &[9; 100]);
        peer.write_all(&big).await.unwrap();
        let read = tokio::spawn(async move {
            let mut bytes = vec![0u8; big.len()];
            reader.read_exact(&mut bytes).await.map(|_| (bytes, big))
        });
        tokio::time::sleep(AUTHENTICATION_GRACE / 2).await;
        authenticated_tx.send_replace(true);
        let (bytes, big) = read.await.unwrap().unwrap();
        assert_eq!(bytes, big);
    }

    #[tokio::test]
    async fn after_authentication_large_frames_pass_through() {
        let (mut peer, ours) = tokio::io::duplex(1 << 16);
        let (authenticated_tx, authenticated) = watch::channel(false);
        let mut reader = PreauthFrames::new(ours, "peer".into(), 8, authenticated);
        authenticated_tx.send_replace(true);
        let big = frame(40_000, &[1; 40_000]);
        peer.write_all(&big).await.unwrap();
        let mut bytes = vec![0u8; big.len()];
        reader.read_exact(&mut bytes).await.unwrap();
        assert_eq!(bytes, big);
    }

    #[tokio::test]
    async fn a_connection_that_closes_unauthenticated_fails_an_oversized_frame_at_once() {
        tokio::time::pause();
        let (mut peer, ours) = tokio::io::duplex(1024);
        let (authenticated_tx, authenticated) = watch::channel(false);
        let mut reader = PreauthFrames::new(ours, "stranger".into(), 8, authenticated);
        drop(authenticated_tx);
        peer.write_all(&frame(9, &[])).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(reader.read_u64().await.is_err());
        assert!(started.elapsed() < AUTHENTICATION_GRACE);
    }
}
