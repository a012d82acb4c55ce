//! Runnable samples of herd. See `src/bin/three_node.rs` (a three-node
//! cluster on loopback) and `src/bin/embedded.rs` (herd inside an axum
//! service with a custom handler).
