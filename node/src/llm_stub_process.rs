//! Runs the stand-in LLM provider (`herd dev llm-stub`) as a child process,
//! for the sample cluster, the benchmarks and the integration tests, and
//! talks to its control API (fault rules, statistics).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::api_client::ApiClient;
use crate::local_cluster::herd_binary;

/// A running `herd dev llm-stub`, killed when dropped.
pub struct LlmStubProcess {
    child: Child,
    address: String,
    control: ApiClient,
}

impl LlmStubProcess {
    /// Starts `herd dev llm-stub --listen LISTEN` with `extra_args` and waits
    /// (30 s at most) for the line that says where it listens.
    pub async fn start(listen: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        let binary = herd_binary()?;
        let mut child = Command::new(binary)
            .args(["dev", "llm-stub", "--listen", listen])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| {
                anyhow::anyhow!("herd dev llm-stub did not say where it listens within 30 s")
            })??
            .ok_or_else(|| anyhow::anyhow!("herd dev llm-stub exited before it listened"))?;
        let address = line
            .rsplit("http://")
            .next()
            .filter(|_| line.contains("http://"))
            .ok_or_else(|| {
                anyhow::anyhow!("unexpected first line from herd dev llm-stub: {line:?}")
            })?
            .trim()
            .to_string();
        // Keep draining stdout so the stub never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let control = ApiClient::new(&format!("http://{address}"));
        Ok(LlmStubProcess {
            child,
            address,
            control,
        })
    }

    /// `host:port` it listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The base URL to configure as a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Its statistics (`GET /stub/stats`).
    pub async fn stats(&self) -> anyhow::Result<Value> {
        let (status, body) = self.control.get_json("/stub/stats").await?;
        anyhow::ensure!(status == 200, "GET /stub/stats answered {status}: {body}");
        Ok(body)
    }

    /// Queues a fault rule (`POST /stub/faults`).
    pub async fn add_fault(&self, rule: &Value) -> anyhow::Result<()> {
        let (status, body) = self
            .control
            .post_json_with_headers("/stub/faults", rule, &[])
            .await?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "POST /stub/faults answered {status}: {body}"
        );
        Ok(())
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
