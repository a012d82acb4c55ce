//! The cluster port against strangers: connections that never authenticate
//! are closed within the handshake deadline, a flood beyond the cap of
//! unauthenticated connections is closed at once, and neither keeps a real
//! node from joining and running tasks.

use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::MemberState;
use herd_tests::{
    DEADLINE, LocalCluster, NodeSpec, eventually, node_state, start_cluster, wait_finished,
    with_deadline,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// More than the node's cap of 64 unauthenticated connections.
const STRANGERS: usize = 100;

/// The node closes an unauthenticated connection after 5 s; allow for a
/// loaded machine.
const CLOSED_WITHIN: Duration = Duration::from_secs(15);

/// Opens `count` connections to `addr`; every other one sends garbage.
async fn strangers(addr: &str, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            // Not a frame the handshake can finish on: a small length
            // prefix and junk.
            let _ = stream.write_all(&[0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3]).await;
        }
        streams.push(stream);
    }
    streams
}

/// True once the node has closed `stream` (end of stream or reset).
async fn closed_by_node(mut stream: TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(CLOSED_WITHIN, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_cluster_port_are_closed_and_a_real_node_still_joins_and_runs_tasks() {
    with_deadline(DEADLINE, async {
        let cluster = start_cluster(vec![NodeSpec::new("n1", "orchestrator,monitor", 0)]).await;
        let addr = cluster.node("n1").cluster_addr();

        let started = Instant::now();
        let held = strangers(&addr, STRANGERS).await;
        let closed = futures_join(held).await;
        assert_eq!(
            closed,
            STRANGERS,
            "the node left {} of {STRANGERS} unauthenticated connections open after {CLOSED_WITHIN:?}",
            STRANGERS - closed
        );
        assert!(started.elapsed() < CLOSED_WITHIN + Duration::from_secs(5));

        // A new flood, held while a real worker node joins through it.
        let flood = strangers(&addr, STRANGERS).await;
        let spec = NodeSpec {
            extra_args: vec!["--seed".to_string(), addr.clone()],
            ..NodeSpec::new("n2", "worker,monitor", 2)
        };
        let _joiner = LocalCluster::spawn(vec![spec], &cluster.cookie).unwrap();
        let api = cluster.api("n1");
        eventually(Duration::from_secs(60), "n2 joins through the flood", || {
            let api = api.clone();
            async move { (node_state(&api, "n2").await == Some(MemberState::Up)).then_some(()) }
        })
        .await;
        // n1 has no workers: these run on n2.
        let tasks: Vec<_> = (0..20)
            .map(|i| json!({ "agent_type": "echo", "payload": i }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        let status = wait_finished(&api, 20, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 20, "{status:?}");
        drop(flood);
    })
    .await;
}

/// How many of `streams` the node closes within [`CLOSED_WITHIN`].
async fn futures_join(streams: Vec<TcpStream>) -> usize {
    let waits: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(closed_by_node(stream)))
        .collect();
    let mut closed = 0;
    for wait in waits {
        if wait.await.unwrap() {
            closed += 1;
        }
    }
    closed
}

/// Sooner than this, the frame limit closed the connection: the handshake
/// deadline (5 s) would have closed it only later.
const CLOSED_BY_THE_FRAME_LIMIT_WITHIN: Duration = Duration::from_millis(2500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_announcing_a_large_frame_is_closed_at_once_and_the_cluster_runs_on() {
    with_deadline(DEADLINE, async {
        let cluster = start_cluster(vec![
            NodeSpec::new("n1", "orchestrator,worker,monitor", 2),
            NodeSpec::new("n2", "worker,monitor", 2),
        ])
        .await;
        let n1 = cluster.node("n1");
        let mut stranger = TcpStream::connect(n1.cluster_addr()).await.unwrap();
        let started = Instant::now();
        // A 10 MiB frame, dribbled: ractor_cluster alone would keep reading
        // it into memory until the handshake deadline.
        stranger
            .write_all(&(10u64 << 20).to_be_bytes())
            .await
            .unwrap();
        let mut buffer = [0u8; 64];
        let closed_after = loop {
            if stranger.write_all(&[0u8; 512]).await.is_err() {
                break started.elapsed();
            }
            // Nothing to read before the handshake: end of stream or a
            // reset means the node closed the connection.
            let read = tokio::time::timeout(Duration::from_millis(20), stranger.read(&mut buffer));
            if let Ok(Ok(0) | Err(_)) = read.await {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < CLOSED_WITHIN,
                "the node kept the connection open"
            );
        };
        assert!(
            closed_after < CLOSED_BY_THE_FRAME_LIMIT_WITHIN,
            "closed only after {closed_after:?}, by the handshake deadline rather than the frame limit"
        );
        eventually(
            Duration::from_secs(10),
            "n1 logs why it closed the connection",
            || {
                let log = n1.log_text();
                async move {
                    log.contains("a frame before authentication announced more bytes")
                        .then_some(())
                }
            },
        )
        .await;

        // The cluster is unaffected: both nodes up, tasks run on both.
        let api = cluster.api("n1");
        for name in ["n1", "n2"] {
            assert_eq!(node_state(&api, name).await, Some(MemberState::Up));
        }
        let tasks: Vec<_> = (0..20)
            .map(|i| json!({ "agent_type": "echo", "payload": i }))
            .collect();
        api.submit_batch(&tasks).await.unwrap();
        let status = wait_finished(&api, 20, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 20, "{status:?}");
    })
    .await;
}
