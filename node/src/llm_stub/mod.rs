//! A stand-in OpenAI-compatible chat-completions provider for development
//! and tests (`herd dev llm-stub`), never for production: it answers
//! deterministically, bills a documented token count, can enforce its own
//! requests-per-minute limit and misbehaves on demand (fault rules posted
//! to `/stub/faults`), and records what it saw (`/stub/stats`).
//!
//! Run it in-process with [`LlmStub::spawn`], or as the `herd dev llm-stub`
//! command. The pieces: [`completion`] (the answer and token counts),
//! [`faults`] (fault rules), [`stats`] (counters), `rate_limit` (the
//! stub's own limit) and `routes` (the HTTP handlers).

pub mod completion;
pub mod faults;
mod rate_limit;
mod routes;
pub mod stats;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{FaultError, FaultRule};
pub use stats::{SecondCount, StatsSnapshot};

use faults::Faults;
use rate_limit::RateLimiter;
use stats::Stats;

/// Largest chat request body; larger ones are answered 413.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The model `GET /v1/models` lists. Chat requests may name any model; the
/// answer echoes the one requested.
pub const MODEL_ID: &str = "stub-model";

/// How long [`LlmStub::shutdown`] lets in-flight requests finish (an
/// injected `delay_ms` may be long) before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the stub behaves. The default: no API key, no rate limit, no
/// latency.
#[derive(Clone, Default)]
pub struct StubSettings {
    /// When set, every `/v1/` request must carry `Authorization: Bearer
    /// <key>`; others get 401 echoing the key they presented.
    pub api_key: Option<String>,
    /// When set, at most this many chat requests are admitted in any
    /// trailing 60 s; the rest get 429 with `Retry-After`.
    pub requests_per_minute: Option<NonZeroU32>,
    /// Added before every chat answer, whatever its status.
    pub latency: Duration,
    /// Up to this much more before every chat answer, derived from the
    /// request body, so the same request always waits as long.
    pub jitter: Duration,
}

impl fmt::Debug for StubSettings {
    // Hand-written so that the API key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("requests_per_minute", &self.requests_per_minute)
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .finish()
    }
}

/// A running stub. Dropping it stops the server (without waiting);
/// [`LlmStub::shutdown`] stops it and waits.
pub struct LlmStub {
    addr: SocketAddr,
    state: Arc<StubState>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl LlmStub {
    /// Binds `addr` (port 0 picks a free port) and serves on the current
    /// tokio runtime. Fails only if the address cannot be bound.
    pub async fn spawn(addr: SocketAddr, settings: StubSettings) -> io::Result<LlmStub> {
        let listener = TcpListener::bind(addr).await?;
        LlmStub::start(listener, settings)
    }

    /// Serves on an already bound listener, on the current tokio runtime.
    pub fn start(listener: TcpListener, settings: StubSettings) -> io::Result<LlmStub> {
        let addr = listener.local_addr()?;
        let state = Arc::new(StubState::new(settings));
        let app = routes::router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(LlmStub {
            addr,
            state,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The address the stub listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI base URL, ending in `/v1` (what clients put in their
    /// `base_url`). A stub listening on all interfaces is reached through
    /// loopback.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/v1", SocketAddr::new(ip, self.addr.port()))
    }

    /// What the stub has seen so far (as `GET /stub/stats` serves it).
    pub fn stats(&self) -> StatsSnapshot {
        self.state.stats_snapshot()
    }

    /// Zeroes the stats (as `POST /stub/reset`).
    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    /// Queues a fault rule (as `POST /stub/faults`).
    pub fn inject(&self, rule: FaultRule) -> Result<(), FaultError> {
        lock(&self.state.faults).push(rule)
    }

    /// Drops every fault rule (as `DELETE /stub/faults`).
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Stops accepting connections and waits up to 5 s for requests in
    /// flight to be answered; after that they are dropped.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => {
                server.abort();
                Ok(())
            }
        }
    }
}

impl Drop for LlmStub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl fmt::Debug for LlmStub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmStub")
            .field("addr", &self.addr)
            .field("settings", &self.state.settings)
            .finish()
    }
}

/// What the handlers share.
struct StubState {
    settings: StubSettings,
    clock: Clock,
    stats: Mutex<Stats>,
    faults: Mutex<Faults>,
    limiter: Option<Mutex<RateLimiter>>,
    next_id: AtomicU64,
}

impl StubState {
    fn new(settings: StubSettings) -> Self {
        StubState {
            limiter: settings
                .requests_per_minute
                .map(|limit| Mutex::new(RateLimiter::new(limit))),
            settings,
            clock: Clock::new(),
            stats: Mutex::default(),
            faults: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    fn stats_snapshot(&self) -> StatsSnapshot {
        lock(&self.stats).snapshot(self.clock.now_ms())
    }

    fn reset_stats(&self) {
        lock(&self.stats).reset();
    }
}

/// Unix milliseconds that never go backwards: the wall clock read once at
/// start, advanced by a monotonic clock. The rate limit and the 60 s
/// window stats would misbehave if the wall clock stepped back.
struct Clock {
    started: Instant,
    started_unix_ms: u64,
}

impl Clock {
    fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            started: Instant::now(),
            started_unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.started_unix_ms.saturating_add(elapsed)
    }
}

/// Locks a mutex whose holder may have panicked: the counters stay usable,
/// and no critical section leaves them half-updated in a way that matters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
