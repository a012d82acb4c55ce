//! herd's configuration: one model, four layers, precise errors.
//!
//! A node's settings come from, in order of precedence, command-line flags
//! (or the embedding builder), `HERD_*` environment variables, a TOML file
//! (`--config` / `HERD_CONFIG`, with `${VAR}` and `${VAR:-default}`
//! expansion), and built-in defaults. [`resolve`] applies the layers and
//! validates everything at once; each [`ConfigError`] names the key, where its
//! value came from (flag, variable, or file and line) and how to fix it.
//!
//! Nothing here reads the process environment implicitly: pass an
//! [`Environment`] (usually [`Environment::from_process`]).

mod environment;
mod error;
mod expand;
mod file;
mod model;
mod origin;
mod resolve;
mod rules;
mod tls;

pub use environment::Environment;
pub use error::{ConfigError, ConfigErrors};
pub use expand::{ExpandError, expand};
pub use file::{FileConfig, LoadedFile, load_file, parse_text};
pub use model::*;
pub use origin::{Origin, SourceMap};
pub use resolve::{
    DEFAULT_HTTP, DEFAULT_LISTEN, DEFAULT_WORKERS, Overrides, resolve, resolve_with_file,
};
pub use rules::MAX_WORKERS_PER_NODE;
pub use tls::{ClusterTlsFiles, TlsFile, TlsIdentityFiles, TlsOverrides, TlsSettings};
