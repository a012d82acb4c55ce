//! Running a herd node inside a tokio program: the builder, the supervision
//! tree, and the handle that submits and queries tasks.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use herd_actors::runtime::HerdNode;
//! use herd_protocol::{JsonText, TaskSpec};
//!
//! let node = HerdNode::builder()
//!     .name("embedded-1")
//!     .cookie("change-me-to-32-random-characters")
//!     .listen("127.0.0.1:7300")
//!     .start()
//!     .await?;
//! let handle = node.handle();
//! let done = handle.run(TaskSpec::new("echo", JsonText::parse("{\"hi\":1}")?), std::time::Duration::from_secs(5)).await?;
//! assert_eq!(done.result.unwrap().as_str(), "{\"hi\":1}");
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod batch_limit;
mod builder;
mod component_history;
mod fatal;
mod handle;
mod leadership;
mod provider_feedback;
mod supervisor;
pub mod test_hooks;

pub use crate::journal::StoreError as JournalError;
pub use crate::membership::{ClusterView, MemberInfo};
pub use batch_limit::BatchTooLarge;
pub use builder::{HerdNode, HerdNodeBuilder, StartError};
pub use fatal::{FatalError, NodeEvent};
pub use handle::{ClientError, NodeHandle};
pub(crate) use supervisor::SupervisorMsg;
