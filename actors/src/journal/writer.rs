//! The journal's background writer: group commit off the actor's thread.

use std::sync::mpsc;
use std::time::Instant;

use super::store::{JournalStore, StoreError};

/// Work for the writer thread.
enum Request {
    Append(Vec<(u64, Vec<u8>)>),
    Snapshot { sequence: u64, book: Vec<u8> },
}

/// What the writer reports back.
#[derive(Debug)]
pub enum WriterEvent {
    /// Every entry up to this sequence number is on disk.
    Durable {
        /// The highest durable sequence.
        through: u64,
        /// Entries in the commit.
        entries: usize,
        /// How long the commit took.
        commit: std::time::Duration,
    },
    /// A snapshot up to this sequence is on disk.
    Snapshotted {
        /// The sequence it covers.
        through: u64,
        /// Its size.
        bytes: usize,
    },
    /// The store failed; the orchestrator must stop (it can no longer
    /// promise durability).
    Failed(String),
}

/// Handle to the writer thread. Dropping it ends the thread after the
/// requests already sent are written.
pub struct JournalWriter {
    requests: mpsc::Sender<Request>,
}

impl JournalWriter {
    /// Starts the writer; `notify` is called (on the writer thread) with
    /// every event.
    pub fn start(
        store: JournalStore,
        notify: impl Fn(WriterEvent) + Send + 'static,
    ) -> JournalWriter {
        let (requests, inbox) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("herd-journal".into())
            .spawn(move || run(store, inbox, notify))
            .expect("the journal thread starts");
        JournalWriter { requests }
    }

    /// Queues entries; they become durable in the next group commit.
    pub fn append(&self, entries: Vec<(u64, Vec<u8>)>) {
        let _ = self.requests.send(Request::Append(entries));
    }

    /// Queues a snapshot covering everything up to `sequence`.
    pub fn snapshot(&self, sequence: u64, book: Vec<u8>) {
        let _ = self.requests.send(Request::Snapshot { sequence, book });
    }
}

fn run(store: JournalStore, inbox: mpsc::Receiver<Request>, notify: impl Fn(WriterEvent)) {
    while let Ok(first) = inbox.recv() {
        // Group commit: take everything that queued up while the last commit
        // was on disk.
        let mut entries = Vec::new();
        let mut snapshot = None;
        let mut next = Some(first);
        while let Some(request) = next {
            match request {
                Request::Append(mut batch) => entries.append(&mut batch),
                Request::Snapshot { sequence, book } => snapshot = Some((sequence, book)),
            }
            next = inbox.try_recv().ok();
        }
        if !entries.is_empty() {
            let through = entries.last().map_or(0, |(sequence, _)| *sequence);
            let count = entries.len();
            let started = Instant::now();
            if let Err(error) = store.append(&entries) {
                notify(WriterEvent::Failed(error.to_string()));
                return;
            }
            notify(WriterEvent::Durable {
                through,
                entries: count,
                commit: started.elapsed(),
            });
        }
        if let Some((sequence, book)) = snapshot {
            let bytes = book.len();
            match store.snapshot(sequence, &book) {
                Ok(()) => notify(WriterEvent::Snapshotted {
                    through: sequence,
                    bytes,
                }),
                Err(StoreError::Io(error)) | Err(StoreError::Open { reason: error, .. }) => {
                    notify(WriterEvent::Failed(error));
                    return;
                }
                Err(error) => {
                    notify(WriterEvent::Failed(error.to_string()));
                    return;
                }
            }
        }
    }
}
