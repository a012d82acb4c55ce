//! The stub's answer to a chat request: parsing the OpenAI request shape,
//! the deterministic reply and the token counts. Pure: no clock, no I/O,
//! so the same request always gets the same content and usage.
//!
//! Token rule (documented for tests and the README): a token is a
//! whitespace-separated word. `prompt_tokens` is the number of words over
//! the text of every message (roles not counted), at least 1;
//! `completion_tokens` is the number of words of the returned content.

use serde::Deserialize;

/// How many words of the last user message the answer quotes; keeps answers
/// short however long the prompt is.
const EXCERPT_WORDS: usize = 24;

/// A chat-completions request, as far as the stub reads it. Unknown fields
/// are ignored, as real providers ignore the ones they do not use.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Echoed back in the answer.
    pub model: String,
    /// The conversation; at least one message.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on completion tokens.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The newer name OpenAI gives `max_tokens`; when both are present the
    /// smaller wins.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Streaming is not supported; `true` is refused rather than answered in
    /// a shape the client does not expect.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...; any string is accepted.
    pub role: String,
    /// A string, an array of content parts (`{"type":"text","text":…}`) or
    /// null; only text counts.
    #[serde(default)]
    pub content: serde_json::Value,
}

impl ChatMessage {
    /// The message's text: the string, or the `text` of every part joined by
    /// a space; empty for anything else.
    pub fn text(&self) -> String {
        match &self.content {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Array(parts) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(|text| text.as_str()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }
}

/// Why a body is not a request the stub answers; the message is meant for
/// the client (OpenAI's `invalid_request_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

impl ChatRequest {
    /// Parses and checks a request body.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, InvalidRequest> {
        let request: ChatRequest = serde_json::from_slice(body).map_err(|error| {
            InvalidRequest(format!(
                "We could not parse the JSON body of your request: {error}. \
                 Expected {{\"model\": …, \"messages\": [{{\"role\": …, \"content\": …}}]}}."
            ))
        })?;
        if request.messages.is_empty() {
            return Err(InvalidRequest(
                "'messages' must contain at least one message.".into(),
            ));
        }
        if request.stream == Some(true) {
            return Err(InvalidRequest(
                "stream=true is not supported by the herd llm stub; send stream=false or omit it."
                    .into(),
            ));
        }
        if request.token_limit() == Some(0) {
            return Err(InvalidRequest("max_tokens must be at least 1.".into()));
        }
        Ok(request)
    }

    /// The effective completion limit: the smaller of `max_tokens` and
    /// `max_completion_tokens`, if either is set.
    pub fn token_limit(&self) -> Option<u32> {
        match (self.max_tokens, self.max_completion_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why the answer stopped, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The whole answer was returned.
    Stop,
    /// The answer was cut at the token limit.
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The stub's answer and what it bills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The assistant message.
    pub content: String,
    /// Words over all message texts, at least 1.
    pub prompt_tokens: u32,
    /// Words of `content`.
    pub completion_tokens: u32,
    /// `Length` when `content` was cut to the token limit.
    pub finish_reason: FinishReason,
}

/// The deterministic answer: `stub answer to: ` followed by the first
/// [`EXCERPT_WORDS`] words of the last user message (`…` appended to the
/// last word when the message was longer), or `(no user message)`. Cut to
/// the request's token limit, if smaller.
pub fn complete(request: &ChatRequest) -> Completion {
    let prompt_tokens = request
        .messages
        .iter()
        .map(|message| count_tokens(&message.text()))
        .sum::<u32>()
        .max(1);
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| message.text())
        .unwrap_or_default();
    let mut words: Vec<String> = ["stub", "answer", "to:"].map(String::from).into();
    let quoted: Vec<&str> = last_user.split_whitespace().collect();
    if quoted.is_empty() {
        words.extend(["(no", "user", "message)"].map(String::from));
    } else {
        words.extend(quoted.iter().take(EXCERPT_WORDS).map(|w| w.to_string()));
        if quoted.len() > EXCERPT_WORDS
            && let Some(last) = words.last_mut()
        {
            // Glued to the word so that the word count, and so the bill,
            // stays the documented one.
            last.push('…');
        }
    }
    let mut finish_reason = FinishReason::Stop;
    if let Some(limit) = request.token_limit()
        && words.len() > limit as usize
    {
        words.truncate(limit as usize);
        finish_reason = FinishReason::Length;
    }
    let content = words.join(" ");
    Completion {
        completion_tokens: count_tokens(&content),
        content,
        prompt_tokens,
        finish_reason,
    }
}

/// A stable 64-bit fingerprint of a request body (FNV-1a, not `std`'s
/// hasher, whose output may change between Rust releases). Drives the
/// latency jitter, so the same request bytes always wait as long.
pub fn fingerprint(body: &[u8]) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write(body);
    hash.finish()
}

/// Whitespace-separated words of `text`: the stub's tokenizer.
pub fn count_tokens(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> ChatRequest {
        ChatRequest::parse(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_answer_quotes_the_last_user_message_and_bills_words() {
        let request = request(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": [{"type": "text", "text": "what is  herd?"}]}
            ]
        }));
        let completion = complete(&request);
        assert_eq!(completion.content, "stub answer to: what is herd?");
        assert_eq!(completion.prompt_tokens, 2 + 2 + 2 + 3);
        assert_eq!(completion.completion_tokens, 6);
        assert_eq!(completion.finish_reason, FinishReason::Stop);
        assert_eq!(complete(&request), completion);
        assert_eq!(fingerprint(b"same"), fingerprint(b"same"));
        assert_ne!(fingerprint(b"same"), fingerprint(b"other"));
    }

    #[test]
    fn long_messages_are_excerpted_and_limits_cut_the_answer() {
        let long = (0..40)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let completion = complete(&request(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": long}]
        })));
        assert_eq!(completion.completion_tokens, 3 + 24);
        assert!(
            completion.content.ends_with("w23…"),
            "{}",
            completion.content
        );
        assert_eq!(completion.prompt_tokens, 40);

        let cut = complete(&request(serde_json::json!({
            "model": "m", "max_tokens": 9, "max_completion_tokens": 2,
            "messages": [{"role": "user", "content": "a b c"}]
        })));
        assert_eq!(cut.content, "stub answer");
        assert_eq!(cut.completion_tokens, 2);
        assert_eq!(cut.finish_reason, FinishReason::Length);
    }

    #[test]
    fn empty_prompts_bill_one_token() {
        let completion = complete(&request(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": null}]
        })));
        assert_eq!(completion.prompt_tokens, 1);
        assert_eq!(completion.content, "stub answer to: (no user message)");
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (body, expected) in [
            ("{", "could not parse"),
            (r#"{"model":"m"}"#, "missing field `messages`"),
            (r#"{"model":"m","messages":[]}"#, "at least one message"),
            (
                r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
                "stream=true",
            ),
            (
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
                "at least 1",
            ),
        ] {
            let error = ChatRequest::parse(body.as_bytes()).unwrap_err();
            assert!(error.0.contains(expected), "{body}: {error}");
        }
    }
}
