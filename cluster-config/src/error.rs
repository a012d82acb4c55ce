//! Configuration errors that say where the bad value came from and how to fix it.

use std::fmt;

use crate::origin::Origin;

/// One invalid setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the value came from.
    pub origin: Origin,
    /// The dotted key, e.g. `node.workers`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` from `origin`.
    pub fn new(origin: Origin, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            origin,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

/// Every problem found in one configuration, reported together so a user can
/// fix them in one go.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [single] => write!(f, "invalid configuration: {single}"),
            many => {
                writeln!(f, "invalid configuration ({} problems):", many.len())?;
                for (index, error) in many.iter().enumerate() {
                    if index > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "  - {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigErrors {
    /// True when any error concerns `key`.
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|error| error.key == key)
    }
}
