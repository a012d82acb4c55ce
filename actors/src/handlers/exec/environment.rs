//! The environment an `exec` child starts with.
//!
//! A node's environment holds its secrets: `HERD_COOKIE`, LLM providers' API
//! keys (`OPENAI_API_KEY`, …), cloud credentials. A child that inherited it
//! could print them into a task's result, so the child starts from an empty
//! environment and gets only:
//!
//! 1. the [`BASELINE`] variables programs need to run, when the node has them
//!    (`PATH` always, [`DEFAULT_PATH`] if the node has none);
//! 2. the node's variables named in the agent type's `pass_env`;
//! 3. the agent type's `env` table;
//! 4. herd's per-attempt variables (`HERD_TASK_ID`, `HERD_AGENT_TYPE`,
//!    `HERD_ATTEMPT`, `TRACEPARENT`), set by the handler.
//!
//! A later layer overrides an earlier one. Whether `pass_env` may name a
//! variable is decided by the configuration (`herd_config`), which refuses
//! herd's own `HERD_*` variables.

use std::ffi::OsString;

/// `PATH` for a child when the node itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The node's variables every child gets when the node has them: what
/// programs need to find executables, a home directory, a locale, a time zone
/// and a place for temporary files. None of them is meant to hold a secret.
pub const BASELINE: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// The variables a child inherits from the node (layers 1 and 2 above), read
/// through `node_variable` so tests can state the node's environment.
/// Nothing else of the node's environment is ever returned.
pub fn inherited(
    node_variable: impl Fn(&str) -> Option<OsString>,
    pass_env: &[String],
) -> Vec<(String, OsString)> {
    let mut variables: Vec<(String, OsString)> = Vec::new();
    for name in BASELINE
        .iter()
        .copied()
        .chain(pass_env.iter().map(String::as_str))
    {
        let value = match (node_variable(name), name) {
            (Some(value), _) => value,
            (None, "PATH") => OsString::from(DEFAULT_PATH),
            (None, _) => continue,
        };
        variables.retain(|(seen, _)| seen != name);
        variables.push((name.to_string(), value));
    }
    variables
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn node(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: BTreeMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn only_the_baseline_and_passed_variables_are_inherited() {
        let node = node(&[
            ("PATH", "/opt/bin:/usr/bin"),
            ("HOME", "/home/herd"),
            ("LANG", "C.UTF-8"),
            ("HERD_COOKIE", "cookie-value"),
            ("OPENAI_API_KEY", "sk-test-secret"),
            ("REGION", "eu-west-1"),
        ]);
        let inherited = inherited(node, &["REGION".to_string(), "UNSET".to_string()]);
        let names: Vec<&str> = inherited.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "LANG", "REGION"]);
        assert_eq!(inherited[0].1, "/opt/bin:/usr/bin");
        assert_eq!(inherited[3].1, "eu-west-1");
    }

    #[test]
    fn a_node_without_path_gives_children_the_default_one() {
        let inherited = inherited(node(&[]), &[]);
        assert_eq!(
            inherited,
            vec![("PATH".to_string(), OsString::from(DEFAULT_PATH))]
        );
    }
}
