//! The handler against an in-test stand-in for an OpenAI-compatible API.

use herd_config::CircuitSettings;
use herd_protocol::{AgentType, AssignmentEpoch, JsonText, TaskId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::handlers::stand_in::{Reply, reply};

/// The stand-in's base URL as a provider's `base_url`.
async fn stand_in(replies: Vec<Reply>) -> (String, crate::handlers::stand_in::Log) {
    let (address, log) = crate::handlers::stand_in::stand_in(replies).await;
    (format!("{address}/v1"), log)
}

const KEY: &str = "sk-stand-in-5ecret";

fn completion_body(content: &str) -> String {
    json!({
        "id": "chatcmpl-1",
        "model": "served-model-2026",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    })
    .to_string()
}

fn provider(base_url: &str) -> ProviderConfig {
    ProviderConfig {
        base_url: base_url.to_string(),
        api_key: Some(Secret::new(KEY)),
        model: Some("provider-model".into()),
        requests_per_minute: None,
        tokens_per_minute: None,
        max_concurrent: None,
        max_wait: Duration::from_secs(5),
        circuit: CircuitSettings::default(),
    }
}

fn agent() -> LlmHandlerConfig {
    LlmHandlerConfig {
        provider: "primary".into(),
        fallback: vec![],
        model: None,
        system_prompt: None,
        temperature: None,
        max_tokens: None,
    }
}

/// A handler calling `base_url` as provider "primary", its calls collected.
fn handler_for(
    agent: LlmHandlerConfig,
    base_url: &str,
    max_response_bytes: usize,
) -> (LlmHandler, mpsc::Receiver<ProviderCall>) {
    let (sender, calls) = mpsc::channel(16);
    let providers = BTreeMap::from([
        ("primary".to_string(), provider(base_url)),
        ("spare".to_string(), provider("http://127.0.0.1:9/v1")),
    ]);
    let handler = LlmHandler::new(
        agent,
        providers,
        max_response_bytes,
        ProviderCallSink::new(sender),
    )
    .unwrap()
    .with_pauses(Arc::default());
    (handler, calls)
}

fn input(payload: Value) -> TaskInput {
    TaskInput {
        task_id: TaskId::new_v7(),
        agent_type: AgentType::new("writer"),
        attempt: 1,
        payload: JsonText::from_value(&payload).unwrap(),
        timeout: Duration::from_secs(5),
        trace_context: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        epoch: AssignmentEpoch(3),
        provider: None,
    }
}

fn fatal(result: Result<TaskOutput, HandlerError>) -> String {
    match result {
        Err(HandlerError::Fatal(message)) => message,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

fn retryable(result: Result<TaskOutput, HandlerError>) -> String {
    match result {
        Err(HandlerError::Retryable(message)) => message,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_prompt_becomes_one_user_message_and_the_answer_the_result() {
    let (url, log) = stand_in(vec![reply(200, completion_body("Hello there"))]).await;
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let task = input(json!({"prompt": "Say hello"}));
    let output = handler.handle(task.clone()).await.unwrap();

    let result: Value = output.result.decode().unwrap();
    assert_eq!(
        result,
        json!({
            "content": "Hello there",
            "model": "served-model-2026",
            "provider": "primary",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 12, "completion_tokens": 7},
        })
    );
    let request = log.lock().await[0].clone();
    assert!(
        request.head.starts_with("POST /v1/chat/completions "),
        "{}",
        request.head
    );
    let head = request.head.to_ascii_lowercase();
    assert!(head.contains(&format!(
        "authorization: bearer {}",
        KEY.to_ascii_lowercase()
    )));
    assert!(head.contains("traceparent: 00-0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(
        request.body,
        json!({"model": "provider-model", "messages": [{"role": "user", "content": "Say hello"}]})
    );

    let call = calls.recv().await.unwrap();
    assert_eq!(call.provider, "primary");
    assert_eq!(call.task_id, task.task_id);
    assert_eq!(call.epoch, AssignmentEpoch(3));
    assert_eq!(call.status, ProviderCallStatus::Ok);
    assert_eq!((call.prompt_tokens, call.completion_tokens), (12, 7));
}

#[tokio::test]
async fn messages_pass_through_after_the_system_prompt_with_templates_and_overrides() {
    let (url, log) = stand_in(vec![reply(200, completion_body("ok"))]).await;
    let agent = LlmHandlerConfig {
        model: Some("agent-model".into()),
        system_prompt: Some("You review {{ inputs.kind }}.".into()),
        temperature: Some(0.2),
        max_tokens: Some(100),
        ..agent()
    };
    let (handler, _calls) = handler_for(agent, &url, 4096);
    handler
        .handle(input(json!({
            "messages": [
                {"role": "user", "content": "Write a poem"},
                {"role": "assistant", "content": "{{ inputs.generation.content }}"},
                {"role": "user", "content": "Critique it"},
            ],
            "inputs": {"kind": "poems", "generation": {"content": "Roses are red"}},
            "model": "task-model",
            "temperature": 0.9,
            "max_tokens": 50,
        })))
        .await
        .unwrap();
    let body = log.lock().await[0].body.clone();
    assert_eq!(
        body,
        json!({
            "model": "task-model",
            "messages": [
                {"role": "system", "content": "You review poems."},
                {"role": "user", "content": "Write a poem"},
                {"role": "assistant", "content": "Roses are red"},
                {"role": "user", "content": "Critique it"},
            ],
            "temperature": 0.9,
            "max_tokens": 50,
        })
    );

    // Without overrides, the agent type's settings apply; a task's
    // system_prompt replaces the agent type's.
    handler
        .handle(input(json!({"prompt": "hi", "system_prompt": "Be terse."})))
        .await
        .unwrap();
    let body = log.lock().await[1].body.clone();
    assert_eq!(body["model"], "agent-model");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
}

#[tokio::test]
async fn an_undefined_template_path_is_fatal_before_any_call() {
    let (url, log) = stand_in(vec![reply(200, completion_body("ok"))]).await;
    let (handler, _calls) = handler_for(agent(), &url, 4096);
    let message = fatal(
        handler
            .handle(input(json!({
                "prompt": "Improve {{ inputs.generation.text }}",
                "inputs": {"generation": {"content": "x"}},
            })))
            .await,
    );
    assert!(message.contains("`inputs.generation.text`"), "{message}");
    assert!(log.lock().await.is_empty());
}

#[tokio::test]
async fn a_429_is_retryable_and_its_hint_recorded() {
    let (url, _log) = stand_in(vec![Reply {
        headers: vec![
            ("retry-after", "7"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ],
        ..reply(429, "{\"error\":{\"message\":\"Rate limit reached\"}}")
    }])
    .await;
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let message = retryable(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("Rate limit reached"), "{message}");
    let call = calls.recv().await.unwrap();
    assert_eq!(call.status, ProviderCallStatus::RateLimited);
    assert_eq!(
        call.hint,
        RateLimitHint {
            retry_after_ms: Some(7_000),
            remaining_tokens: Some(0),
            reset_tokens_ms: Some(360_000),
            ..RateLimitHint::default()
        }
    );
}

#[tokio::test]
async fn server_errors_are_retryable_and_count_as_unavailable() {
    let (url, _log) = stand_in(vec![reply(500, "{\"error\":\"overloaded\"}")]).await;
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let message = retryable(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("500"), "{message}");
    assert_eq!(
        calls.recv().await.unwrap().status,
        ProviderCallStatus::Unavailable
    );
}

#[tokio::test]
async fn a_refused_key_is_fatal_and_never_quoted_even_when_echoed() {
    let (url, _log) = stand_in(vec![reply(
        401,
        "{\"error\":{\"message\":\"Incorrect API key provided: {auth}\"}}",
    )])
    .await;
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let message = fatal(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert!(message.contains("providers.primary.api_key"), "{message}");
    assert_eq!(
        calls.recv().await.unwrap().status,
        ProviderCallStatus::AuthRejected
    );
}

#[tokio::test]
async fn other_client_errors_and_unusable_answers_are_fatal_rejections() {
    let (url, _log) = stand_in(vec![
        reply(400, "{\"error\":\"model not found\"}"),
        reply(200, "{\"choices\":[]}"),
    ])
    .await;
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let message = fatal(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("model not found"), "{message}");
    let message = fatal(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("choices[0].message.content"), "{message}");
    for _ in 0..2 {
        assert_eq!(
            calls.recv().await.unwrap().status,
            ProviderCallStatus::Rejected
        );
    }
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused() {
    let (url, _log) = stand_in(vec![reply(200, completion_body(&"x".repeat(2_000)))]).await;
    let (handler, mut calls) = handler_for(agent(), &url, 1_000);
    let message = fatal(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("more than 1000 bytes"), "{message}");
    assert_eq!(
        calls.recv().await.unwrap().status,
        ProviderCallStatus::Rejected
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_retryable_and_recorded() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let message = retryable(handler.handle(input(json!({"prompt": "x"}))).await);
    assert!(message.contains("could not connect"), "{message}");
    assert_eq!(
        calls.recv().await.unwrap().status,
        ProviderCallStatus::Unavailable
    );
}

#[tokio::test]
async fn the_granted_provider_is_called_and_an_unknown_one_is_fatal() {
    let (url, log) = stand_in(vec![reply(200, completion_body("ok"))]).await;
    let (handler, mut calls) = handler_for(
        LlmHandlerConfig {
            provider: "spare".into(),
            ..agent()
        },
        &url,
        4096,
    );
    let mut granted = input(json!({"prompt": "x"}));
    granted.provider = Some("primary".into());
    handler.handle(granted.clone()).await.unwrap();
    assert_eq!(log.lock().await.len(), 1);
    assert_eq!(calls.recv().await.unwrap().provider, "primary");

    granted.provider = Some("elsewhere".into());
    let message = fatal(handler.handle(granted).await);
    assert!(message.contains("[providers.elsewhere]"), "{message}");
}

#[tokio::test]
async fn after_a_429_the_next_call_waits_out_the_retry_after_or_gives_up_at_once() {
    let (url, log) = stand_in(vec![
        Reply {
            headers: vec![("retry-after", "1")],
            ..reply(429, "{}")
        },
        reply(200, completion_body("ok")),
    ])
    .await;
    let (handler, _calls) = handler_for(agent(), &url, 4096);
    retryable(handler.handle(input(json!({"prompt": "x"}))).await);

    // An attempt with less time than the pause gives up without calling.
    let mut short = input(json!({"prompt": "x"}));
    short.timeout = Duration::from_millis(300);
    let message = retryable(handler.handle(short).await);
    assert!(message.contains("asked to wait"), "{message}");
    assert_eq!(log.lock().await.len(), 1);

    // One with enough time waits, then calls.
    handler.handle(input(json!({"prompt": "x"}))).await.unwrap();
    let log = log.lock().await;
    let gap = log[1].at - log[0].at;
    assert!(
        gap >= Duration::from_millis(900),
        "second call after {gap:?}"
    );
}

#[tokio::test]
async fn a_provider_that_does_not_answer_in_time_is_retryable_and_recorded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    // Accepts connections and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (handler, mut calls) = handler_for(agent(), &url, 4096);
    let mut task = input(json!({"prompt": "x"}));
    task.timeout = Duration::from_millis(400);
    let message = retryable(handler.handle(task).await);
    assert!(message.contains("timed out"), "{message}");
    assert_eq!(
        calls.recv().await.unwrap().status,
        ProviderCallStatus::Unavailable
    );
}
