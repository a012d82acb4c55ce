//! `${VAR}` and `${VAR:-default}` expansion in TOML text.
//!
//! Expansion follows the deployment guide's convention (seed 001) and shell
//! semantics: `${VAR}` requires VAR to be set, `${VAR:-default}` falls back
//! when VAR is unset or empty, and `$${` writes a literal `${`. It applies in
//! bare values and basic strings (`"..."`, `"""..."""`) but not in literal
//! strings (`'...'`) or comments, so a literal string is the escape hatch and
//! a commented-out line never fails on a missing variable. Inside basic
//! strings substituted text is escaped, so a value containing `"` or `\`
//! cannot break the document. Line structure is preserved (a value with a
//! newline is an error), so TOML error positions still point at the user's
//! file.

/// A `${...}` reference that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${VAR}` with VAR unset and no default.
    #[error(
        "line {line}: environment variable {name} is not set; set it, or write ${{{name}:-default}} to give a default"
    )]
    Unset {
        /// 1-based line of the reference.
        line: usize,
        /// The variable.
        name: String,
    },
    /// `${` without a closing `}` or with an invalid variable name.
    #[error(
        "line {line}: malformed reference {text:?}; write ${{NAME}} or ${{NAME:-default}} (NAME: letters, digits, underscore), or $${{ for a literal ${{"
    )]
    Malformed {
        /// 1-based line of the reference.
        line: usize,
        /// The text that did not parse.
        text: String,
    },
    /// The value would span lines.
    #[error(
        "line {line}: the value of {name} contains a line break, which a config value cannot hold"
    )]
    Multiline {
        /// 1-based line of the reference.
        line: usize,
        /// The variable.
        name: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Bare,
    Comment,
    BasicString,
    MultilineBasicString,
    LiteralString,
    MultilineLiteralString,
}

/// Expands references in `text`, looking variables up with `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut output = String::with_capacity(text.len());
    let mut context = Context::Bare;
    let mut line = 1;
    let mut rest = text;

    while let Some(c) = rest.chars().next() {
        // Escape sequences inside basic strings are copied verbatim so that
        // `\"` does not end the string and `\$` stays what the user wrote.
        if matches!(
            context,
            Context::BasicString | Context::MultilineBasicString
        ) && c == '\\'
        {
            let escape_len = rest[1..]
                .chars()
                .next()
                .map_or(1, |next| 1 + next.len_utf8());
            if rest[1..].starts_with('\n') {
                line += 1;
            }
            output.push_str(&rest[..escape_len]);
            rest = &rest[escape_len..];
            continue;
        }

        let expands = matches!(
            context,
            Context::Bare | Context::BasicString | Context::MultilineBasicString
        );
        if expands && rest.starts_with("$${") {
            output.push_str("${");
            rest = &rest[3..];
            continue;
        }
        if expands && rest.starts_with("${") {
            let (value, consumed) = expand_reference(rest, line, lookup)?;
            if context == Context::Bare {
                output.push_str(&value);
            } else {
                push_escaped_for_basic_string(&mut output, &value);
            }
            rest = &rest[consumed..];
            continue;
        }

        let (next_context, consumed) = step(context, rest);
        output.push_str(&rest[..consumed]);
        line += rest[..consumed].matches('\n').count();
        context = next_context;
        rest = &rest[consumed..];
    }
    Ok(output)
}

/// Advances the lexer over one token that may change the context.
fn step(context: Context, rest: &str) -> (Context, usize) {
    let one = rest.chars().next().map_or(1, char::len_utf8);
    match context {
        Context::Bare => {
            if rest.starts_with("\"\"\"") {
                (Context::MultilineBasicString, 3)
            } else if rest.starts_with("'''") {
                (Context::MultilineLiteralString, 3)
            } else if rest.starts_with('"') {
                (Context::BasicString, 1)
            } else if rest.starts_with('\'') {
                (Context::LiteralString, 1)
            } else if rest.starts_with('#') {
                (Context::Comment, 1)
            } else {
                (Context::Bare, one)
            }
        }
        Context::Comment if rest.starts_with('\n') => (Context::Bare, 1),
        Context::BasicString if rest.starts_with('"') || rest.starts_with('\n') => {
            (Context::Bare, 1)
        }
        Context::LiteralString if rest.starts_with('\'') || rest.starts_with('\n') => {
            (Context::Bare, 1)
        }
        Context::MultilineBasicString if rest.starts_with("\"\"\"") => (Context::Bare, 3),
        Context::MultilineLiteralString if rest.starts_with("'''") => (Context::Bare, 3),
        other => (other, one),
    }
}

/// Parses `${NAME}` or `${NAME:-default}` at the start of `rest`; returns the
/// value and the number of bytes consumed.
fn expand_reference(
    rest: &str,
    line: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, usize), ExpandError> {
    let malformed = || ExpandError::Malformed {
        line,
        text: rest
            .lines()
            .next()
            .unwrap_or(rest)
            .chars()
            .take(40)
            .collect(),
    };
    let close = rest.find('}').ok_or_else(malformed)?;
    let inner = &rest[2..close];
    if inner.contains('\n') {
        return Err(malformed());
    }
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(malformed());
    }
    // Shell semantics: `:-` treats an empty value like an unset one; plain
    // `${NAME}` accepts an empty value.
    let value = match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => default.to_string(),
        (Some(value), _) => value,
        (None, Some(default)) => default.to_string(),
        (None, None) => {
            return Err(ExpandError::Unset {
                line,
                name: name.to_string(),
            });
        }
    };
    if value.contains('\n') || value.contains('\r') {
        return Err(ExpandError::Multiline {
            line,
            name: name.to_string(),
        });
    }
    Ok((value, close + 1))
}

fn push_escaped_for_basic_string(output: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\t' => output.push_str("\\t"),
            c if c.is_control() => output.push_str(&format!("\\u{:04X}", c as u32)),
            c => output.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        let lookup = with(&[("NAME", "n1"), ("EMPTY", "")]);
        let text =
            "a = \"${NAME}\"\nb = \"${MISSING:-x}\"\nc = \"${EMPTY:-fallback}\"\nd = ${W:-4}\n";
        assert_eq!(
            expand(text, &lookup).unwrap(),
            "a = \"n1\"\nb = \"x\"\nc = \"fallback\"\nd = 4\n"
        );
    }

    #[test]
    fn unset_variable_names_the_line_and_the_fix() {
        let error = expand("a = 1\nb = \"${COOKIE}\"\n", &with(&[])).unwrap_err();
        assert_eq!(
            error,
            ExpandError::Unset {
                line: 2,
                name: "COOKIE".into()
            }
        );
        assert!(error.to_string().contains("${COOKIE:-default}"));
    }

    #[test]
    fn comments_and_literal_strings_are_left_alone() {
        let text = "# uses ${NOT_SET}\na = '${NOT_SET}'\nb = '''\n${NOT_SET}\n'''\n";
        assert_eq!(expand(text, &with(&[])).unwrap(), text);
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() {
        assert_eq!(
            expand("a = \"$${HOME}\"", &with(&[])).unwrap(),
            "a = \"${HOME}\""
        );
    }

    #[test]
    fn values_are_escaped_inside_basic_strings() {
        let lookup = with(&[("TRICKY", "a\"b\\c")]);
        let expanded = expand("a = \"${TRICKY}\"", &lookup).unwrap();
        assert_eq!(expanded, "a = \"a\\\"b\\\\c\"");
        let table: toml::Table = toml::from_str(&expanded).unwrap();
        assert_eq!(table["a"].as_str(), Some("a\"b\\c"));
    }

    #[test]
    fn escaped_quotes_do_not_end_a_string() {
        let lookup = with(&[("X", "1")]);
        assert_eq!(
            expand("a = \"q\\\" # ${X}\"", &lookup).unwrap(),
            "a = \"q\\\" # 1\""
        );
    }

    #[test]
    fn malformed_and_multiline_references_are_errors() {
        assert!(matches!(
            expand("a = \"${NAME\"\n", &with(&[])),
            Err(ExpandError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            expand("\na = \"${1X}\"", &with(&[])),
            Err(ExpandError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            expand("a = \"${V}\"", &with(&[("V", "x\ny")])),
            Err(ExpandError::Multiline { line: 1, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn text_without_references_is_unchanged(text in "[^$]*") {
            proptest::prop_assert_eq!(expand(&text, &|_| None).unwrap(), text);
        }

        #[test]
        fn expansion_preserves_line_count(value in "[a-zA-Z0-9 \"\\\\]{0,20}") {
            let lookup = move |_: &str| Some(value.clone());
            let text = "a = \"${V}\"\nb = ${V:-1}\n# ${V}\nc = 'x'\n";
            let expanded = expand(text, &lookup).unwrap();
            proptest::prop_assert_eq!(expanded.lines().count(), text.lines().count());
        }
    }
}
