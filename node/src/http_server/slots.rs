//! Connection slots: the cap on how many HTTP connections a node holds.
//!
//! A slot is held from accept until the connection closes. When every slot
//! is taken, the server first evicts the oldest connection that has no
//! request in flight (a client still trickling its headers, or an idle
//! keep-alive) and then waits for a slot to free. Evicting rather than only
//! waiting is what keeps `/live` and real requests answering while
//! thousands of half-sent requests are held open: they cannot starve newer
//! connections, they only push each other out. Connections with a request in
//! flight are never evicted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The slots of one server.
#[derive(Clone)]
pub struct Slots {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    capacity: usize,
    /// Open connections by admission order (oldest first).
    open: Mutex<BTreeMap<u64, Arc<Tracked>>>,
    next_id: AtomicU64,
}

/// What the server knows about one open connection.
#[derive(Default)]
struct Tracked {
    in_flight: AtomicUsize,
    evict: Notify,
}

/// One held slot; dropping it frees the slot.
pub struct Lease {
    id: u64,
    tracked: Arc<Tracked>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    /// `capacity` slots (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Slots {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(capacity)),
                capacity,
                open: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// A slot for a just-accepted connection: at once if one is free,
    /// otherwise after evicting the oldest idle connection (or, when every
    /// connection has a request in flight, after one closes).
    pub async fn admit(&self) -> Lease {
        let permit = match self.inner.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.evict_oldest_idle();
                self.inner
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked::default());
        self.lock().insert(id, tracked.clone());
        Lease {
            id,
            tracked,
            inner: self.inner.clone(),
            _permit: permit,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.capacity - self.inner.permits.available_permits()
    }

    /// Waits until every connection has closed.
    pub async fn all_closed(&self) {
        let all = u32::try_from(self.inner.capacity).unwrap_or(u32::MAX);
        let _ = self.inner.permits.acquire_many(all).await;
    }

    fn evict_oldest_idle(&self) {
        let mut open = self.lock();
        let oldest_idle = open
            .iter()
            .find(|(_, tracked)| tracked.in_flight.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        if let Some(tracked) = oldest_idle.and_then(|id| open.remove(&id)) {
            // notify_one stores the wake-up if the task is not waiting yet.
            tracked.evict.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Tracked>>> {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lease {
    /// Resolves when the server wants this connection closed to make room.
    pub async fn evicted(&self) {
        self.tracked.evict.notified().await;
    }

    /// Marks a request in flight until the returned guard drops: the
    /// connection is not evicted meanwhile.
    pub fn request(&self) -> InFlight {
        self.tracked.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.tracked.clone())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// A request in flight on a connection (see [`Lease::request`]).
pub struct InFlight(Arc<Tracked>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_server_evicts_its_oldest_idle_connection_never_a_busy_one() {
        let slots = Slots::new(2);
        let busy = slots.admit().await;
        let _request = busy.request();
        let idle = slots.admit().await;
        assert_eq!(slots.open(), 2);
        let admitting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(5), idle.evicted())
            .await
            .expect("the idle connection is evicted");
        drop(idle);
        let third = tokio::time::timeout(Duration::from_secs(5), admitting)
            .await
            .expect("the new connection gets the freed slot")
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), busy.evicted())
                .await
                .is_err(),
            "the busy connection was evicted"
        );
        drop(third);
        assert_eq!(slots.open(), 1);
    }
}
