//! The stand-in LLM provider, through real HTTP on a real listener: the
//! OpenAI shapes, deterministic answers and token counts, authentication,
//! fault rules, its own rate limit, the stats and the request limits.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use herd_node::llm_stub::{LlmStub, StatsSnapshot, StubSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(settings: StubSettings) -> LlmStub {
    LlmStub::spawn("127.0.0.1:0".parse().unwrap(), settings)
        .await
        .expect("the stub binds a free port")
}

/// The stub's root (the base URL without `/v1`), for the control API.
fn root(stub: &LlmStub) -> String {
    stub.url().trim_end_matches("/v1").to_string()
}

fn request(text: &str) -> Value {
    json!({
        "model": "gpt-test",
        "temperature": 0.2,
        "some_future_field": {"ignored": true},
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text},
        ],
    })
}

async fn chat(stub: &LlmStub, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut call = reqwest::Client::new()
        .post(format!("{}/chat/completions", stub.url()))
        .json(body);
    if let Some(key) = key {
        call = call.bearer_auth(key);
    }
    call.send().await.expect("the stub answers")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn http_stats(stub: &LlmStub) -> StatsSnapshot {
    reqwest::get(format!("{}/stub/stats", root(stub)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn answers_have_the_openai_shape_and_are_deterministic() {
    let stub = start(StubSettings::default()).await;
    let body = request("What does   herd do?");
    let first = chat(&stub, &body, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = json_of(first).await;
    let second = json_of(chat(&stub, &body, None).await).await;

    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["model"], "gpt-test");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(first["created"].as_u64().unwrap().abs_diff(now) < 60);
    let choice = &first["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "stub answer to: What does herd do?"
    );
    assert_eq!(choice["finish_reason"], "stop");
    // The documented rule: one token per whitespace-separated word.
    // Prompt: "You are terse." (3) + "What does herd do?" (4).
    assert_eq!(
        first["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14})
    );
    assert_eq!(first["choices"], second["choices"]);
    assert_eq!(first["usage"], second["usage"]);

    let stats = http_stats(&stub).await;
    assert_eq!(stats, stub.stats());
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.by_status, [(200, 2)].into());
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (14, 14));
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.max_requests_in_any_60s_window, 2);
    assert_eq!(stats.arrivals_ms.len(), 2);
    assert!(stats.arrivals_ms[0] <= stats.arrivals_ms[1]);
    assert_eq!(stats.per_second.iter().map(|s| s.requests).sum::<u64>(), 2);
    assert!(stats.rate_limited_responses.is_empty());
}

#[tokio::test]
async fn a_small_max_tokens_cuts_the_answer() {
    let stub = start(StubSettings::default()).await;
    let mut body = request("one two three four five");
    body["max_tokens"] = json!(4);
    let answer = json_of(chat(&stub, &body, None).await).await;
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "stub answer to: one"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 4);
    assert_eq!(stub.stats().completion_tokens, 4);
}

#[tokio::test]
async fn a_configured_key_is_required_and_a_wrong_one_echoed() {
    let stub = start(StubSettings {
        api_key: Some("sk-right".into()),
        ..StubSettings::default()
    })
    .await;
    let body = request("hello");

    let missing = chat(&stub, &body, None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let wrong = chat(&stub, &body, Some("sk-wrong-123")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(wrong).await,
        json!({"error": {
            "message": "Incorrect API key provided: sk-wrong-123",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }})
    );
    assert_eq!(
        chat(&stub, &body, Some("sk-right")).await.status(),
        StatusCode::OK
    );

    let models = format!("{}/models", stub.url());
    let client = reqwest::Client::new();
    let refused = client.get(&models).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let listed = client
        .get(&models)
        .bearer_auth("sk-right")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(
        json_of(listed).await["data"][0],
        json!({"id": "stub-model", "object": "model", "owned_by": "herd-llm-stub"})
    );

    let stats = stub.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.by_status, [(200, 1), (401, 2)].into());
}

#[tokio::test]
async fn injected_429s_carry_retry_after_then_answers_are_normal_again() {
    let stub = start(StubSettings::default()).await;
    let queued = reqwest::Client::new()
        .post(format!("{}/stub/faults", root(&stub)))
        .json(&json!({"status": 429, "count": 2, "retry_after_s": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), StatusCode::OK);
    assert_eq!(json_of(queued).await["queued"][0]["count"], 2);

    let body = request("hi");
    for _ in 0..2 {
        let limited = chat(&stub, &body, None).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&limited, "retry-after"), "7");
        let error = json_of(limited).await;
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("injected")
        );
    }
    assert_eq!(chat(&stub, &body, None).await.status(), StatusCode::OK);

    let stats = stub.stats();
    assert_eq!(stats.by_status, [(200, 1), (429, 2)].into());
    assert_eq!(stats.rate_limited_responses.len(), 2);
    // Only the 200 is billed.
    assert_eq!(stats.prompt_tokens, 4);
}

#[tokio::test]
async fn a_rule_without_count_lasts_until_cleared() {
    let stub = start(StubSettings::default()).await;
    let client = reqwest::Client::new();
    let faults = format!("{}/stub/faults", root(&stub));
    client
        .post(&faults)
        .json(&json!({"status": 500, "count": null}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let body = request("hi");
    for _ in 0..3 {
        let failed = chat(&stub, &body, None).await;
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json_of(failed).await["error"]["type"], "server_error");
    }
    let cleared = client.delete(&faults).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(chat(&stub, &body, None).await.status(), StatusCode::OK);
    assert_eq!(stub.stats().by_status, [(200, 1), (500, 3)].into());
}

#[tokio::test]
async fn nonsense_fault_rules_are_refused_with_the_reason() {
    let stub = start(StubSettings::default()).await;
    let client = reqwest::Client::new();
    let faults = format!("{}/stub/faults", root(&stub));
    for (rule, expected) in [
        (json!({"status": 302}), "cannot be injected"),
        (json!({"status": 500, "count": 0}), "count 0"),
        (
            json!({"status": 429, "retry_after": 3}),
            "unknown field `retry_after`",
        ),
    ] {
        let refused = client.post(&faults).json(&rule).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{rule}");
        let message = json_of(refused).await["error"]["message"].to_string();
        assert!(message.contains(expected), "{rule}: {message}");
    }
    let listed = json_of(client.get(&faults).send().await.unwrap()).await;
    assert_eq!(listed, json!({"queued": []}));
}

#[tokio::test]
async fn slow_answer_rules_and_latency_delay_answers() {
    let stub = start(StubSettings {
        latency: Duration::from_millis(100),
        jitter: Duration::from_millis(50),
        ..StubSettings::default()
    })
    .await;
    stub.inject(herd_node::llm_stub::FaultRule {
        status: 200,
        count: Some(1),
        retry_after_s: None,
        delay_ms: Some(400),
    })
    .unwrap();
    let body = request("take your time");
    let started = Instant::now();
    let slow = chat(&stub, &body, None).await;
    assert_eq!(slow.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    assert_eq!(chat(&stub, &body, None).await.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );

    // The base latency delays error answers too.
    stub.inject(herd_node::llm_stub::FaultRule {
        status: 500,
        count: Some(1),
        retry_after_s: None,
        delay_ms: None,
    })
    .unwrap();
    let started = Instant::now();
    let failed = chat(&stub, &body, None).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_in_flight_are_counted() {
    let stub = start(StubSettings {
        latency: Duration::from_millis(1_500),
        ..StubSettings::default()
    })
    .await;
    let body = request("in parallel");
    let calls = futures::future::join_all((0..3).map(|_| chat(&stub, &body, None)));
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stub.stats().in_flight < 3 {
            assert!(
                Instant::now() < deadline,
                "never 3 in flight: {:?}",
                stub.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (answers, ()) = tokio::join!(calls, watch);
    assert!(answers.iter().all(|a| a.status() == StatusCode::OK));
    let stats = stub.stats();
    assert_eq!((stats.in_flight, stats.max_in_flight), (0, 3));
    assert_eq!(stats.max_requests_in_any_60s_window, 3);
}

#[tokio::test]
async fn the_stubs_own_limit_answers_429_like_a_provider() {
    let stub = start(StubSettings {
        requests_per_minute: NonZeroU32::new(3),
        ..StubSettings::default()
    })
    .await;
    let body = request("count me");
    for remaining in ["2", "1", "0"] {
        let admitted = chat(&stub, &body, None).await;
        assert_eq!(admitted.status(), StatusCode::OK);
        assert_eq!(header(&admitted, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&admitted, "x-ratelimit-remaining-requests"),
            remaining
        );
        assert_eq!(header(&admitted, "x-ratelimit-reset-requests"), "1m0s");
    }
    let refused = chat(&stub, &body, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let error = json_of(refused).await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Limit 3"),
        "{error}"
    );

    let stats = stub.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.by_status, [(200, 3), (429, 1)].into());
    assert_eq!(stats.rate_limited_responses.len(), 1);
    assert!(stats.rate_limited_responses[0] >= stats.arrivals_ms[3]);
}

#[tokio::test]
async fn bad_bodies_get_openai_errors() {
    let stub = start(StubSettings::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stub.url());

    let malformed = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(malformed).await["error"]["type"],
        "invalid_request_error"
    );

    let no_messages = client
        .post(&url)
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_messages.status(), StatusCode::BAD_REQUEST);
    let message = json_of(no_messages).await["error"]["message"].to_string();
    assert!(message.contains("messages"), "{message}");

    let huge = request(&"word ".repeat(1024 * 1024));
    let too_large = client.post(&url).json(&huge).send().await.unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        json_of(too_large).await["error"]["type"],
        "invalid_request_error"
    );

    let unknown = client
        .get(format!("{}/nowhere", stub.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let message = json_of(unknown).await["error"]["message"].to_string();
    assert!(message.contains("GET /v1/nowhere"), "{message}");

    let stats = stub.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.by_status, [(400, 2), (413, 1)].into());
    assert_eq!(stats.prompt_tokens, 0);
}

#[tokio::test]
async fn reset_zeroes_the_stats() {
    let stub = start(StubSettings::default()).await;
    chat(&stub, &request("one"), None).await;
    chat(&stub, &request("two"), None).await;
    assert_eq!(stub.stats().requests, 2);
    let reset = reqwest::Client::new()
        .post(format!("{}/stub/reset", root(&stub)))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    let stats = http_stats(&stub).await;
    assert_eq!(stats.requests, 0);
    assert!(stats.by_status.is_empty());
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (0, 0));
    assert!(stats.arrivals_ms.is_empty() && stats.per_second.is_empty());
    assert_eq!(stats.max_requests_in_any_60s_window, 0);
    stub.shutdown().await.unwrap();
}
