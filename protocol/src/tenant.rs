//! Tenants: who a task belongs to.
//!
//! Every task belongs to the tenant of the API token that submitted it. A
//! tenant sees, lists, cancels and retries only its own tasks, has its own
//! limits, and gets a fair share of each agent type's slots. A cluster
//! without tokens has one tenant, [`Tenant::DEFAULT_NAME`].

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tenant's name: 1–64 characters of ASCII letters, digits, `-`, `_` and
/// `.`. Construct with [`Tenant::parse`]; cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// The tenant of a cluster without tokens, and of tasks journaled before
    /// tenants existed.
    pub const DEFAULT_NAME: &'static str = "default";

    /// Checks the naming rule; the message says what is allowed.
    pub fn parse(text: &str) -> Result<Tenant, String> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if text.is_empty() || text.len() > 64 || !text.chars().all(valid_char) {
            return Err(format!(
                "tenant {text:?} is not a valid name; use 1 to 64 ASCII letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(Tenant(text.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant(Self::DEFAULT_NAME.into())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Tenant {
    /// The name; in [`without_tenants`] mode, nothing (a unit, which bincode
    /// writes as no bytes), as values were written before tenants existed.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if WITHOUT_TENANTS.with(Cell::get) {
            return serializer.serialize_unit();
        }
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tenant {
    /// In [`without_tenants`] mode, reads nothing and yields the
    /// default tenant: bincode is positional, so this is what lets a value
    /// written before tenants existed decode into today's types.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if WITHOUT_TENANTS.with(Cell::get) {
            return Ok(Tenant::default());
        }
        let text = String::deserialize(deserializer)?;
        Tenant::parse(&text).map_err(serde::de::Error::custom)
    }
}

thread_local! {
    static WITHOUT_TENANTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `code` in the mode where every [`Tenant`] field (and every type
/// that asks [`is_without_tenants`]) decodes, and encodes, as values were
/// written before tenants existed. Used by the journal to read values of
/// its format version 1 (and by tests to write them); the mode ends with
/// `code`, also when it panics. Only bincode values may be coded this way.
pub fn without_tenants<T>(code: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            WITHOUT_TENANTS.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(WITHOUT_TENANTS.with(|flag| flag.replace(true)));
    code()
}

/// True inside [`without_tenants`].
pub fn is_without_tenants() -> bool {
    WITHOUT_TENANTS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert_eq!(
            Tenant::parse("team-a.prod_1").unwrap().as_str(),
            "team-a.prod_1"
        );
        assert!(Tenant::parse("").is_err());
        assert!(Tenant::parse("has space").is_err());
        assert!(Tenant::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn a_value_written_before_tenants_decodes_with_the_default_tenant() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Before {
            a: u32,
            b: String,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct After {
            a: u32,
            tenant: Tenant,
            b: String,
        }
        let config = bincode::config::standard();
        let old = bincode::serde::encode_to_vec(
            Before {
                a: 7,
                b: "x".into(),
            },
            config,
        )
        .unwrap();
        // Encoding in the mode writes exactly what Before wrote.
        let again_old = without_tenants(|| {
            bincode::serde::encode_to_vec(
                After {
                    a: 7,
                    tenant: Tenant::parse("ignored").unwrap(),
                    b: "x".into(),
                },
                config,
            )
            .unwrap()
        });
        assert_eq!(again_old, old);
        let (decoded, _): (After, _) =
            without_tenants(|| bincode::serde::decode_from_slice(&old, config).unwrap());
        assert_eq!(
            decoded,
            After {
                a: 7,
                tenant: Tenant::default(),
                b: "x".into()
            }
        );
        // Outside the mode the field is read.
        let new = bincode::serde::encode_to_vec(&decoded, config).unwrap();
        let (again, _): (After, _) = bincode::serde::decode_from_slice(&new, config).unwrap();
        assert_eq!(again, decoded);
        assert!(!is_without_tenants());
    }
}
