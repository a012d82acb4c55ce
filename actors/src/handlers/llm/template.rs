//! Renders prompts, message contents and system prompts as minijinja
//! (Jinja2) templates against `{"inputs": …}`, so `{{inputs.generation.content}}`
//! inserts a parent task's answer.
//!
//! Sandboxed on purpose: undefined names are errors (a typo must not send
//! an empty prompt), there is no loader (no `include`/`extends`/`import`),
//! every render has a fuel budget so a hostile template cannot spin, and the
//! output is bounded in bytes. Text without template syntax is returned as
//! is, without parsing.

use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::handlers::HandlerError;

/// Instructions one render may execute; plenty for loops over inputs,
/// far too few for a runaway loop.
const FUEL_PER_RENDER: u64 = 100_000;

/// A configured template engine (no loader, strict undefined, fuel).
#[derive(Debug)]
pub(super) struct PromptTemplates {
    engine: Environment<'static>,
    max_output_bytes: usize,
}

impl PromptTemplates {
    /// An engine whose renders may produce up to `max_output_bytes`.
    pub(super) fn new(max_output_bytes: usize) -> Self {
        let mut engine = Environment::new();
        engine.set_undefined_behavior(UndefinedBehavior::Strict);
        engine.set_fuel(Some(FUEL_PER_RENDER));
        // Keeps the failing expression's span, so errors can name it.
        engine.set_debug(true);
        PromptTemplates {
            engine,
            max_output_bytes,
        }
    }

    /// `text` rendered against `{"inputs": inputs}`; `field` names the text
    /// in errors (e.g. `prompt`, `messages[2].content`).
    pub(super) fn render(
        &self,
        field: &str,
        text: &str,
        inputs: &serde_json::Value,
    ) -> Result<String, HandlerError> {
        if !(text.contains("{{") || text.contains("{%") || text.contains("{#")) {
            return Ok(text.to_string());
        }
        let context = serde_json::json!({ "inputs": inputs });
        let rendered = self
            .engine
            .render_str(text, context)
            .map_err(|error| HandlerError::Fatal(explain(field, text, inputs, &error)))?;
        if rendered.len() > self.max_output_bytes {
            return Err(HandlerError::Fatal(format!(
                "the template in {field} renders to more than {} bytes; shorten it or its inputs",
                self.max_output_bytes
            )));
        }
        Ok(rendered)
    }
}

fn explain(
    field: &str,
    text: &str,
    inputs: &serde_json::Value,
    error: &minijinja::Error,
) -> String {
    let expression = error
        .range()
        .and_then(|range| text.get(dotted_path_start(text, range.start)..range.end))
        .map(str::trim)
        .filter(|expression| !expression.is_empty());
    match (error.kind(), expression) {
        (ErrorKind::UndefinedError, Some(expression)) => {
            let available = match inputs.as_object() {
                Some(map) if !map.is_empty() => {
                    let names: Vec<&str> = map.keys().map(String::as_str).collect();
                    format!("the task's inputs are {}", names.join(", "))
                }
                _ => "the task has no inputs".to_string(),
            };
            format!(
                "the template in {field} uses `{expression}`, which is undefined; {available} (write {{{{ inputs.NAME }}}})"
            )
        }
        (ErrorKind::OutOfFuel, _) => format!(
            "the template in {field} takes too long to render (it ran out of its {FUEL_PER_RENDER}-step budget); simplify its loops"
        ),
        (_, Some(expression)) => {
            format!("the template in {field} fails at `{expression}`: {error}")
        }
        (_, None) => format!("the template in {field} is not valid: {error}"),
    }
}

/// minijinja's span of a failed attribute lookup starts at its first `.`;
/// step back over the name it is taken from, so the error shows the whole
/// path (`inputs.generation.text`).
fn dotted_path_start(text: &str, start: usize) -> usize {
    let before = text.get(..start).unwrap_or_default();
    let name_length: usize = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .map(char::len_utf8)
        .sum();
    start - name_length
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fatal_message(result: Result<String, HandlerError>) -> String {
        match result {
            Err(HandlerError::Fatal(message)) => message,
            other => panic!("expected a fatal error, got {other:?}"),
        }
    }

    #[test]
    fn renders_inputs_and_leaves_plain_text_alone() {
        let templates = PromptTemplates::new(1024);
        let inputs = json!({"generation": {"content": "a poem"}});
        assert_eq!(
            templates
                .render("prompt", "Review: {{inputs.generation.content}}", &inputs)
                .unwrap(),
            "Review: a poem"
        );
        // Braces that are not template syntax stay as written.
        assert_eq!(
            templates
                .render("prompt", "JSON like {\"a\": 1} { {x} }", &json!({}))
                .unwrap(),
            "JSON like {\"a\": 1} { {x} }"
        );
    }

    #[test]
    fn an_undefined_path_is_fatal_and_named() {
        let templates = PromptTemplates::new(1024);
        let message = fatal_message(templates.render(
            "messages[0].content",
            "Use {{ inputs.genration.content }} please",
            &json!({"generation": {"content": "x"}}),
        ));
        assert!(message.contains("messages[0].content"), "{message}");
        assert!(message.contains("`inputs.genration.content`"), "{message}");
        assert!(message.contains("inputs are generation"), "{message}");
    }

    #[test]
    fn runaway_loops_syntax_errors_and_includes_are_refused() {
        let templates = PromptTemplates::new(1 << 20);
        let spin = "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}";
        let message = fatal_message(templates.render("prompt", spin, &json!({})));
        assert!(message.contains("too long to render"), "{message}");
        let message = fatal_message(templates.render("prompt", "{{ inputs.", &json!({})));
        assert!(message.contains("prompt"), "{message}");
        fatal_message(templates.render("prompt", "{% include 'x' %}", &json!({})));
    }

    #[test]
    fn output_beyond_the_bound_is_refused() {
        let templates = PromptTemplates::new(10);
        let message = fatal_message(templates.render(
            "system_prompt",
            "{{ inputs.long }}",
            &json!({"long": "far more than ten bytes"}),
        ));
        assert!(message.contains("more than 10 bytes"), "{message}");
    }
}
