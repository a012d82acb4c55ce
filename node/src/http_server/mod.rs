//! The HTTP server every node (and an embedding service) runs its router
//! on: `axum::serve` with the bounds it lacks.
//!
//! - **Connection cap** ([`slots`]): at most [`max_connections`] sockets are
//!   open at once, so a flood of clients cannot take the file descriptors
//!   that tasks, the journal and cluster links need. A full server evicts
//!   its oldest connection without a request in flight before it waits.
//! - **Header timeout**: a client that has not sent a request's line and
//!   headers within `header_timeout` is disconnected (hyper's
//!   `header_read_timeout`); half-sent requests cannot pin a slot for long.
//!
//! - **TLS** ([`serve_with_tls`]): the handshake happens in the
//!   connection's task, within the header timeout, never in the accept
//!   loop; plain HTTP to an HTTPS port gets a `400` that says so.
//!
//! Body and request timeouts are per-route decisions (a `?wait=` long-poll
//! may legitimately take minutes), so they live in the router:
//! [`crate::api::router`].

pub mod slots;
mod tls;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use herd_config::HttpServerSettings;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use self::slots::Slots;

/// The connections a server may hold: the configured cap, but never more
/// than a quarter of the process's file-descriptor limit (`ulimit -n`), so
/// the rest of the node always has descriptors left.
pub fn max_connections(settings: &HttpServerSettings) -> usize {
    let configured = settings.max_connections as usize;
    match fd_limit() {
        Some(limit) => configured.min((limit / 4).max(1)),
        None => configured,
    }
}

/// The soft `RLIMIT_NOFILE`, if it can be read and is finite.
fn fd_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (read && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as usize)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish (callers bound that wait). Guarantees the connection cap
/// and header timeout of `settings` (see the module doc). Plain HTTP; see
/// [`serve_with_tls`] for HTTPS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with_tls(listener, app, settings, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is set (build it with
/// [`herd_actors::tls::api_server_config`]). The handshake counts against
/// the header timeout: a client has `header_timeout` from accept to send a
/// whole request's head, TLS included.
pub async fn serve_with_tls(
    listener: TcpListener,
    app: Router,
    settings: &HttpServerSettings,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let capacity = max_connections(settings);
    let slots = Slots::new(capacity);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let header_timeout = settings.header_timeout;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    info!(
        max_connections = capacity,
        header_timeout_s = settings.header_timeout.as_secs(),
        tls = tls.is_some(),
        "http server bounds"
    );
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_error(error).await;
                    continue;
                }
            },
        };
        // Admission happens after accept, so a full server makes room for
        // the newcomer rather than leaving it in the kernel's backlog.
        let lease = slots.admit().await;
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            http: http.clone(),
            app: app.clone(),
            lease,
            stop: stop_rx.clone(),
            peer,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return connection.serve(stream).await;
            };
            let mut stop = connection.stop.clone();
            let stream = tokio::select! {
                handshake = tokio::time::timeout(header_timeout, tls::handshake(&acceptor, stream, peer)) => match handshake {
                    Ok(Some(stream)) => stream,
                    Ok(None) => return,
                    Err(_) => {
                        debug!(%peer, "tls handshake not done within the header timeout; closing");
                        return;
                    }
                },
                () = connection.lease.evicted() => return,
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => return,
            };
            connection.serve(stream).await;
        });
    }
    let _ = stop_tx.send(true);
    slots.all_closed().await;
    Ok(())
}

/// One admitted connection: what serving it needs.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    app: Router,
    lease: slots::Lease,
    stop: tokio::sync::watch::Receiver<bool>,
    peer: std::net::SocketAddr,
}

impl Connection {
    /// Serves HTTP/1.1 on `io` until the client leaves, the connection is
    /// evicted, or the server stops (then requests in flight finish).
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            http,
            app,
            lease,
            mut stop,
            peer,
        } = self;
        let service = hyper::service::service_fn(|request: hyper::Request<Incoming>| {
            let in_flight = lease.request();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        let connection = http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%peer, %error, "http connection ended with an error");
                }
            }
            () = lease.evicted() => debug!(%peer, "http connection evicted to admit a newer one"),
            // The guard wait_for returns is not Send: drop it at once.
            () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// Accept errors are per connection (the peer left) or resource exhaustion
/// (EMFILE/ENFILE); on the latter, pause instead of spinning.
async fn accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    warn!(%error, "cannot accept an http connection; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
