//! The environment variables a configuration is resolved against.
//!
//! Resolution never reads the process environment directly: callers pass an
//! [`Environment`], so tests can state exactly which variables exist.

use std::collections::BTreeMap;

/// A snapshot of environment variables.
#[derive(Clone, Debug, Default)]
pub struct Environment(BTreeMap<String, String>);

impl Environment {
    /// The current process's environment (variables that are valid UTF-8).
    pub fn from_process() -> Self {
        Environment(std::env::vars().collect())
    }

    /// An environment holding exactly `vars`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// The value of `name` if set and not blank.
    pub fn get_non_empty(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .filter(|value| !value.trim().is_empty())
            .cloned()
    }
}
