//! TLS with real processes: certificates from `herd certs`, the API over
//! HTTPS, the cluster transport over mutual TLS. A node without the
//! cluster's trust (another CA, no TLS, the wrong cookie) cannot join, and
//! a relay between two nodes sees no task payload in clear — while the same
//! relay without TLS does (so the check can fail).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_protocol::TaskState;
use herd_tests::{
    DEADLINE, LocalCluster, NodeSpec, dev_certs, eventually, send_raw, start_cluster, temp_dir,
    wait_finished, waiting_for, with_deadline, with_tls,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tls_nodes_form_a_cluster_run_tasks_and_answer_only_https() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("tls").unwrap();
        let certs = dev_certs(dir.path(), &["n1", "n2", "n3"]);
        // Every node seeds from every other, and the launcher waits until the
        // orchestrator lists all three up, asking over https with the dev CA.
        let specs = NodeSpec::three_nodes(2)
            .into_iter()
            .map(|spec| with_tls(spec, &certs))
            .collect();
        let mut cluster = start_cluster(specs).await;

        // Tasks submitted through a non-orchestrator node (forwarded over
        // the TLS cluster link) run on all three nodes.
        let api = cluster.api("n2");
        assert!(api.base().starts_with("https://"), "{}", api.base());
        let tasks: Vec<_> = (0..60)
            .map(|i| json!({ "agent_type": "echo", "payload": { "i": i } }))
            .collect();
        let ids = api.submit_batch(&tasks).await.expect("batch accepted");
        let status = wait_finished(&api, 60, Duration::from_secs(60)).await;
        assert_eq!(status.tasks.succeeded, 60, "{:?}", status.tasks);
        let mut nodes = std::collections::BTreeSet::new();
        for id in &ids {
            let view = api.task(*id, None).await.unwrap();
            assert_eq!(view.state, TaskState::Succeeded);
            nodes.insert(view.node.unwrap().to_string());
        }
        assert_eq!(nodes.len(), 3, "tasks ran on {nodes:?}");

        // n2 and n3 only seeded each other through the launcher; they also
        // found each other transitively (herd's discovery over TLS).
        let n3_log = cluster.node("n3").log_text();
        assert!(
            n3_log
                .lines()
                .any(|line| line.contains("peer joined") && line.contains("n2#")),
            "n3 never joined n2:\n{n3_log}"
        );

        // Plain http to the https port: a 400 that says to use https.
        let plain = format!("http://127.0.0.1:{}", cluster.node("n1").http_port);
        let answer = send_raw(&plain, "GET", "/live", b"").await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["code"], "https_required", "{:?}", answer.body);
        // https without trusting the dev CA: refused, saying why.
        let untrusting = herd_tests::ApiClient::new(&cluster.node("n1").api_url());
        let error = untrusting.get_json("/live").await.unwrap_err().to_string();
        assert!(
            error.contains("cannot reach the herd API at https://"),
            "{error}"
        );

        // The CLI: herd status over https with --ca-cert.
        let output = tokio::process::Command::new(herd_node::local_cluster::herd_binary().unwrap())
            .args([
                "status",
                "--api",
                &cluster.node("n3").api_url(),
                "--ca-cert",
            ])
            .arg(certs.join("ca.pem"))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("orchestrator: n1"), "{stdout}");
        assert!(stdout.contains("60 succeeded"), "{stdout}");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_the_clusters_ca_tls_or_cookie_cannot_join() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("tls-refusals").unwrap();
        let certs = dev_certs(&dir.path().join("cluster"), &["n1", "n2", "x3"]);
        let foreign = dev_certs(&dir.path().join("foreign"), &["x1"]);
        let specs = vec![
            with_tls(
                NodeSpec::new("n1", "orchestrator,worker,monitor", 1),
                &certs,
            ),
            with_tls(NodeSpec::new("n2", "worker,monitor", 1), &certs),
        ];
        let mut cluster = start_cluster(specs).await;
        let seed = cluster.node("n1").cluster_addr();
        let intruder = |spec: NodeSpec| NodeSpec {
            extra_args: [spec.extra_args.clone(), vec!["--seed".into(), seed.clone()]].concat(),
            ..spec
        };
        // x1: a certificate from another CA (and trusting only that CA).
        // x2: no TLS at all. x3: the right CA, the wrong cookie.
        let mut wrong_cookie = with_tls(NodeSpec::new("x3", "worker", 1), &certs);
        wrong_cookie.env.push((
            "HERD_COOKIE".into(),
            herd_node::local_cluster::random_cookie(),
        ));
        // Each alone (no seeds but n1), so that they do not dial each other.
        let intruders: Vec<LocalCluster> = [
            intruder(with_tls(NodeSpec::new("x1", "worker", 1), &foreign)),
            intruder(NodeSpec::new("x2", "worker", 1)),
            intruder(wrong_cookie),
        ]
        .into_iter()
        .map(|spec| LocalCluster::spawn(vec![spec], &cluster.cookie).unwrap())
        .collect();

        // Each refusal is logged, with its reason, on one side or both.
        let n1 = || cluster.node("n1").log_text();
        let log_of = |name: &str| {
            let index = ["x1", "x2", "x3"].iter().position(|x| *x == name).unwrap();
            intruders[index].node(name).log_text()
        };
        eventually(
            Duration::from_secs(30),
            "x1 is refused for its CA",
            || async {
                (log_of("x1").contains("UnknownIssuer")
                    && n1().contains("the TLS handshake failed"))
                .then_some(())
            },
        )
        .await;
        eventually(
            Duration::from_secs(30),
            "x2 is refused as plaintext",
            || async {
                (n1().contains("refused a plaintext cluster connection")
                    && log_of("x2").contains("closed before authentication"))
                .then_some(())
            },
        )
        .await;
        eventually(
            Duration::from_secs(30),
            "x3 is refused for its cookie",
            || async {
                log_of("x3")
                    .contains("closed before authentication")
                    .then_some(())
            },
        )
        .await;

        let status = cluster.api("n1").cluster().await.unwrap();
        let names: Vec<&str> = status.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2"], "only the cluster's nodes are members");
        drop(intruders);
        cluster.stop().await;
    })
    .await;
}

/// The bytes one direction of one relayed connection carried.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A TCP relay that records every byte it passes, per connection and
/// direction.
struct Relay {
    address: SocketAddr,
    streams: Arc<Mutex<Vec<Recording>>>,
}

impl Relay {
    /// Relays every connection to `target`.
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let streams: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let recorded = streams.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                for (read, write) in [
                    (
                        Box::new(in_read) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(out_write) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(out_read), Box::new(in_write)),
                ] {
                    let record = Arc::new(Mutex::new(Vec::new()));
                    recorded.lock().unwrap().push(record.clone());
                    tokio::spawn(pump(read, write, record));
                }
            }
        });
        Relay { address, streams }
    }

    /// Bytes relayed so far.
    fn relayed(&self) -> usize {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .map(|stream| stream.lock().unwrap().len())
            .sum()
    }

    /// Whether `needle` appears in any direction of any connection.
    fn saw(&self, needle: &[u8]) -> bool {
        self.streams.lock().unwrap().iter().any(|stream| {
            stream
                .lock()
                .unwrap()
                .windows(needle.len())
                .any(|window| window == needle)
        })
    }
}

/// Copies `read` to `write`, appending everything to `record`.
async fn pump(
    mut read: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    mut write: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    record: Recording,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(count) => {
                record.lock().unwrap().extend_from_slice(&buffer[..count]);
                if write.write_all(&buffer[..count]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = write.shutdown().await;
}

/// Runs tasks whose payload carries a unique marker between an orchestrator
/// (`hub`, no workers) and the only worker (`spoke`, which reaches `hub`
/// only through a recording relay), and returns whether the relay saw the
/// marker.
async fn marker_crosses_relay_in_clear(certs: Option<&std::path::Path>) -> bool {
    let secure = |spec: NodeSpec| match certs {
        Some(certs) => with_tls(spec, certs),
        None => spec,
    };
    let cookie = herd_node::local_cluster::random_cookie();
    let mut orchestrator = LocalCluster::spawn(
        vec![secure(NodeSpec::new("hub", "orchestrator,monitor", 0))],
        &cookie,
    )
    .unwrap();
    let relay = Relay::start(orchestrator.node("hub").cluster_addr()).await;
    let mut worker_spec = secure(NodeSpec::new("spoke", "worker,monitor", 2));
    worker_spec
        .extra_args
        .extend(["--seed".into(), relay.address.to_string()]);
    let mut worker = LocalCluster::spawn(vec![worker_spec], &cookie).unwrap();
    {
        let _step = waiting_for("spoke to join hub through the relay");
        worker
            .wait_ready(Duration::from_secs(30))
            .await
            .unwrap_or_else(|error| panic!("spoke did not join: {error}"));
    }

    let marker = format!(
        "payload-marker-{}",
        herd_node::local_cluster::random_cookie()
    );
    let api = orchestrator.api("hub");
    let tasks: Vec<_> = (0..20)
        .map(|i| json!({ "agent_type": "echo", "payload": { "secret": marker, "i": i } }))
        .collect();
    let ids = api.submit_batch(&tasks).await.expect("batch accepted");
    wait_finished(&api, 20, Duration::from_secs(60)).await;
    for id in ids {
        let view = api.task(id, None).await.unwrap();
        assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
        assert_eq!(view.node.as_ref().map(|n| n.as_str()), Some("spoke"));
        let result = view.result.expect("a result").as_str().to_string();
        assert!(result.contains(&marker), "the echo came back: {result}");
    }
    assert!(
        relay.relayed() > 1000,
        "the cluster link went through the relay ({} bytes)",
        relay.relayed()
    );
    let saw = relay.saw(marker.as_bytes());
    worker.stop().await;
    orchestrator.stop().await;
    saw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_payload_never_crosses_a_tls_cluster_link_in_clear() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("tls-relay").unwrap();
        let certs = dev_certs(dir.path(), &["hub", "spoke"]);
        assert!(
            !marker_crosses_relay_in_clear(Some(&certs)).await,
            "the marker crossed the TLS link in clear"
        );
        // The same relay without TLS sees it: the check above can fail.
        assert!(
            marker_crosses_relay_in_clear(None).await,
            "without TLS the relay should have seen the marker"
        );
    })
    .await;
}
