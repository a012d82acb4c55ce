//! What an `exec` program sees of its node's environment, through real
//! processes: the node's secrets (its cluster cookie, an LLM provider's API
//! key) never reach it, the variables named in `pass_env` do.

use std::time::Duration;

use herd_protocol::TaskState;
use herd_tests::{DEADLINE, temp_dir, three_node_cluster_with, with_deadline, write_config};
use serde_json::json;

/// A fake provider key, as an operator would export it for `[providers.…]`.
const API_KEY: &str = "sk-test-secret-4f1c9a07d2b3";
/// A node variable the agent type allow-lists.
const REGION: &str = "eu-test-1";

/// Prints the program's environment as a JSON array of `NAME=value` strings.
const PRINT_ENVIRONMENT: &str = r#"env | awk 'BEGIN { printf "[" } { gsub(/\\/, "&&"); gsub(/"/, "\\\""); printf "%s\"%s\"", (NR > 1 ? "," : ""), $0 } END { print "]" }'
"#;

/// The variable `name` of process `pid`, read from `/proc`.
fn process_variable(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|byte| *byte == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        entry.strip_prefix(&format!("{name}=")).map(str::to_string)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_program_sees_neither_the_cookie_nor_an_api_key_but_sees_its_pass_env() {
    with_deadline(DEADLINE, async {
        let dir = temp_dir("exec-env").unwrap();
        let script = dir.path().join("print-environment.sh");
        std::fs::write(&script, PRINT_ENVIRONMENT).unwrap();
        let config = write_config(
            dir.path(),
            "agents.toml",
            &format!(
                r#"
[agents.inspect]
handler = "exec"
command = ["sh", "{script}"]
pass_env = ["DEPLOY_REGION"]
env = {{ PURPOSE = "exec-env-test" }}
max_attempts = 1
"#,
                script = script.display()
            ),
        );
        let cluster = three_node_cluster_with(
            2,
            &config,
            &[("OPENAI_API_KEY", API_KEY), ("DEPLOY_REGION", REGION)],
        )
        .await;
        // The secrets really are in every node's environment, so a program
        // that inherited it would print them.
        for node in &cluster.nodes {
            let pid = node.pid().expect("the node runs");
            assert_eq!(
                process_variable(pid, "HERD_COOKIE").as_deref(),
                Some(cluster.cookie.as_str())
            );
            assert_eq!(
                process_variable(pid, "OPENAI_API_KEY").as_deref(),
                Some(API_KEY)
            );
        }

        let api = cluster.api("n1");
        let mut ids = Vec::new();
        for index in 0..6 {
            ids.push(api.submit("inspect", json!({ "n": index })).await.unwrap());
        }
        for id in ids {
            let view = api.task(id, Some(Duration::from_secs(60))).await.unwrap();
            assert_eq!(view.state, TaskState::Succeeded, "{view:?}");
            let result = view.result.expect("a succeeded task has a result");
            let variables: Vec<String> = result.decode().unwrap();
            let text = result.as_str();
            assert!(
                !text.contains(cluster.cookie.as_str()),
                "the cookie reached the program: {text}"
            );
            assert!(!text.contains("HERD_COOKIE"), "{text}");
            assert!(
                !text.contains(API_KEY),
                "the API key reached the program: {text}"
            );
            assert!(!text.contains("OPENAI_API_KEY"), "{text}");
            for expected in [
                format!("DEPLOY_REGION={REGION}"),
                "PURPOSE=exec-env-test".to_string(),
                format!("HERD_TASK_ID={id}"),
                "HERD_AGENT_TYPE=inspect".to_string(),
                "HERD_ATTEMPT=1".to_string(),
            ] {
                assert!(
                    variables.contains(&expected),
                    "{expected} missing in {text}"
                );
            }
            assert!(
                variables
                    .iter()
                    .any(|variable| variable.starts_with("PATH=")),
                "{text}"
            );
        }
    })
    .await;
}
