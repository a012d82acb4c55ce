//! Fault-injection hooks for herd's own multi-process tests.
//!
//! Off by default and impossible to switch on from the network: a node
//! enables them only when its process was started with the environment
//! variable `HERD_TEST_HOOKS=1`. Without it, the pool ignores the hook
//! message and the HTTP API does not even route the hook (404). Never set
//! it in a deployment: a hook deliberately breaks the node.

use std::sync::OnceLock;

/// The environment variable that enables the hooks (value `1`).
pub const TEST_HOOKS_ENV: &str = "HERD_TEST_HOOKS";

/// True if this process was started with `HERD_TEST_HOOKS=1` (read once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var(TEST_HOOKS_ENV).is_ok_and(|value| value == "1"))
}
