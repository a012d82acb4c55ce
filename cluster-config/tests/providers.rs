//! `[providers.NAME]` and `handler = "llm"` agent types, through the public API.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use herd_config::{ConfigErrors, Environment, HandlerConfig, NodeConfig, Overrides, resolve};

const KEY: &str = "sk-test-5ecret-never-shown";

fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (dir, path)
}

fn resolve_text(text: &str, env: &Environment) -> (Result<NodeConfig, ConfigErrors>, PathBuf) {
    let (dir, path) = write_config(text);
    let result = resolve(
        &Overrides {
            name: Some("n1".into()),
            cookie: Some("c-cookie-for-this-test".into()),
            config: Some(path.clone()),
            ..Overrides::default()
        },
        env,
    );
    drop(dir);
    (result, path)
}

fn errors_of(text: &str) -> (String, PathBuf) {
    let (result, path) = resolve_text(text, &Environment::default());
    (result.unwrap_err().to_string(), path)
}

fn assert_mentions(message: &str, expected: &[String]) {
    for expected in expected {
        assert!(
            message.contains(expected.as_str()),
            "missing {expected:?} in:\n{message}"
        );
    }
}

const VALID: &str = r#"
[tasks]
circuit_failures = 7

[providers.openai]
base_url = "https://api.openai.com/v1/"
api_key = "${OPENAI_API_KEY}"
model = "gpt-4o-mini"
requests_per_minute = 500
tokens_per_minute = 200000
max_concurrent = 20
circuit_recovery_s = 30

[providers.local]
base_url = "http://127.0.0.1:11434/v1"
model = "llama3"
max_wait_s = 0

[agents.writer]
handler = "llm"
provider = "openai"
fallback = ["local"]
system_prompt = "You write briefly."
temperature = 0.2
max_tokens = 512
"#;

#[test]
fn providers_and_llm_agents_resolve_with_defaults_filled_in() {
    let env = Environment::from_pairs([("OPENAI_API_KEY", KEY)]);
    let (result, _) = resolve_text(VALID, &env);
    let config = result.unwrap();

    let openai = &config.providers["openai"];
    assert_eq!(openai.base_url, "https://api.openai.com/v1");
    assert_eq!(openai.api_key.as_ref().map(|k| k.expose()), Some(KEY));
    assert_eq!(openai.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(openai.requests_per_minute, Some(500));
    assert_eq!(openai.tokens_per_minute, Some(200_000));
    assert_eq!(openai.max_concurrent, Some(20));
    assert_eq!(openai.max_wait, Duration::from_secs(5));
    // The circuit inherits [tasks] key by key.
    assert_eq!(openai.circuit.failures, 7);
    assert_eq!(openai.circuit.recovery, Duration::from_secs(30));
    assert_eq!(openai.circuit.half_open_trials, 3);

    let local = &config.providers["local"];
    assert_eq!(local.api_key, None);
    assert_eq!(local.max_wait, Duration::ZERO);
    assert_eq!(local.requests_per_minute, None);

    let writer = &config.agents[&"writer".into()];
    assert!(
        writer.llm,
        "llm agent types count against max_concurrent_llm_calls"
    );
    let HandlerConfig::Llm(llm) = &writer.handler else {
        panic!("unexpected handler {:?}", writer.handler);
    };
    assert_eq!(llm.chain().collect::<Vec<_>>(), vec!["openai", "local"]);
    assert_eq!(llm.model, None);
    assert_eq!(llm.system_prompt.as_deref(), Some("You write briefly."));
    assert_eq!(llm.temperature, Some(0.2));
    assert_eq!(llm.max_tokens, Some(512));
}

#[test]
fn the_api_key_is_read_from_a_file_next_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openai.key"), format!("{KEY}\n")).unwrap();
    let path = dir.path().join("herd.toml");
    std::fs::write(
        &path,
        "[providers.openai]\nbase_url = \"https://api.openai.com/v1\"\napi_key_file = \"openai.key\"\nmodel = \"m\"\n",
    )
    .unwrap();
    let config = resolve(
        &Overrides {
            name: Some("n1".into()),
            cookie: Some("c-cookie-for-this-test".into()),
            config: Some(path),
            ..Overrides::default()
        },
        &Environment::default(),
    )
    .unwrap();
    let key = config.providers["openai"].api_key.as_ref().unwrap();
    assert_eq!(key.expose(), KEY);
}

#[test]
fn provider_errors_name_file_line_and_fix() {
    let (message, path) = errors_of(
        r#"[providers.Open_AI]
base_url = "https://x"

[providers.nourl]
model = "m"

[providers.ftp]
base_url = "ftp://example.com"

[providers.both]
base_url = "https://x"
api_key = "inline"
api_key_file = "/k"

[providers.missingfile]
base_url = "https://x"
api_key_file = "/nonexistent/herd-test.key"

[providers.ranges]
base_url = "https://x"
requests_per_minute = 0
tokens_per_minute = 20000000000
max_concurrent = 10001
max_wait_s = 3601
circuit_half_open_trials = 0
"#,
    );
    let at = |line: usize| format!("{}:{line}", path.display());
    assert_mentions(
        &message,
        &[
            format!(
                "{}: providers.Open_AI: provider name \"Open_AI\" must be",
                at(1)
            ),
            format!("{}: providers.nourl.base_url: is required", at(4)),
            format!(
                "{}: providers.ftp.base_url: \"ftp://example.com\" is not an http:// or https:// URL",
                at(8)
            ),
            format!(
                "{}: providers.both.api_key_file: cannot be combined with api_key",
                at(13)
            ),
            format!(
                "{}: providers.missingfile.api_key_file: cannot read /nonexistent/herd-test.key",
                at(17)
            ),
            format!(
                "{}: providers.ranges.requests_per_minute: is 0, outside 1..=1000000",
                at(21)
            ),
            format!(
                "{}: providers.ranges.tokens_per_minute: is 20000000000, outside 1..=10000000000",
                at(22)
            ),
            format!(
                "{}: providers.ranges.max_concurrent: is 10001, outside 1..=10000",
                at(23)
            ),
            format!(
                "{}: providers.ranges.max_wait_s: is 3601, outside 0..=3600",
                at(24)
            ),
            format!(
                "{}: providers.ranges.circuit_half_open_trials: is 0, outside 1..=1000",
                at(25)
            ),
        ],
    );
}

#[test]
fn llm_agent_errors_say_what_to_set() {
    let (message, path) = errors_of(
        r#"[providers.openai]
base_url = "https://x"

[providers.spare]
base_url = "https://y"
model = "m"

[agents.noprovider]
handler = "llm"
model = "m"

[agents.unknown]
handler = "llm"
provider = "anthropic"
model = "m"

[agents.chain]
handler = "llm"
provider = "spare"
fallback = ["spare", "nowhere", "openai", "openai"]

[agents.ranges]
handler = "llm"
provider = "spare"
temperature = 2.5
max_tokens = 0

[agents.mixed]
handler = "llm"
provider = "spare"
url = "http://x"

[agents.echoer]
handler = "echo"
provider = "spare"
temperature = 1.0

[agents.typo]
handler = "lm"
"#,
    );
    let at = |line: usize| format!("{}:{line}", path.display());
    assert_mentions(
        &message,
        &[
            format!(
                "{}: agents.noprovider.provider: is required for handler = \"llm\"",
                at(8)
            ),
            format!(
                "{}: agents.unknown.provider: \"anthropic\" is not a [providers.NAME]; the declared providers are openai, spare",
                at(14)
            ),
            format!(
                "{}: agents.chain.fallback: names \"spare\", which is already this agent type's provider",
                at(20)
            ),
            "agents.chain.fallback: names \"nowhere\", which is not a [providers.NAME]".to_string(),
            "agents.chain.fallback: names \"openai\" twice".to_string(),
            "agents.chain.model: is not set, and provider \"openai\" has no model either; set model here or in [providers.openai]".to_string(),
            format!(
                "{}: agents.ranges.temperature: is 2.5, outside 0..=2",
                at(25)
            ),
            format!(
                "{}: agents.ranges.max_tokens: is 0, outside 1..=1000000",
                at(26)
            ),
            format!(
                "{}: agents.mixed.url: applies only to handler = \"http\", but this agent type uses handler = \"llm\"",
                at(31)
            ),
            format!(
                "{}: agents.echoer.provider: applies only to handler = \"llm\", but this agent type uses handler = \"echo\"",
                at(35)
            ),
            "agents.echoer.temperature: applies only to handler = \"llm\"".to_string(),
            format!(
                "{}: agents.typo.handler: \"lm\" is not a handler; use \"echo\", \"sleep\", \"exec\", \"http\", \"llm\" or \"custom\"",
                at(39)
            ),
        ],
    );
}

#[test]
fn the_api_key_never_appears_in_debug_output_or_errors() {
    let env = Environment::from_pairs([("OPENAI_API_KEY", KEY)]);
    let (result, _) = resolve_text(VALID, &env);
    let config = result.unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains("***"), "{debug}");

    // Every error the providers table can produce, with the key present
    // inline, from the environment and in a key file.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("bad.key");
    std::fs::write(&key_file, format!("{KEY}\n\u{7}")).unwrap();
    let text = format!(
        r#"[providers.a]
base_url = "not-a-url"
api_key = "{KEY}"
api_key_file = "/k"
model = ""

[providers.b]
base_url = "https://x"
api_key = "${{OPENAI_API_KEY}}"
requests_per_minute = -1

[providers.c]
base_url = "https://x"
api_key_file = "{}"

[providers.d]
base_url = "https://x"
api_key = "{KEY}\u0007"

[agents.w]
handler = "llm"
provider = "b"
"#,
        key_file.display()
    );
    let (result, _) = resolve_text(&text, &env);
    let errors = result.unwrap_err();
    assert!(errors.0.len() >= 5, "{errors}");
    let shown = errors.to_string();
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("control characters"), "{shown}");
    assert!(!format!("{errors:?}").contains(KEY));
}
