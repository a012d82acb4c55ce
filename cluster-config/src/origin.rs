//! Where a configuration value came from, so errors can point at it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The layer that supplied a value. Precedence: flag > env > file > default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--workers`.
    Flag(&'static str),
    /// An environment variable, e.g. `HERD_WORKERS`.
    Env(&'static str),
    /// A line of a config file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the position is unknown).
        line: usize,
    },
    /// herd's built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File { path, line: 0 } => write!(f, "{}", path.display()),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

/// Maps dotted key paths (`node.workers`, `agents.echo.weight`) of a parsed
/// file to the line they are written on.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    path: PathBuf,
    lines: BTreeMap<String, usize>,
}

impl SourceMap {
    /// Builds the map for `text` (already expanded), read from `path`.
    /// Text that does not parse yields an empty map; the parse error itself is
    /// reported by the typed deserialisation.
    pub fn build(path: &Path, text: &str) -> SourceMap {
        let mut lines = BTreeMap::new();
        if let Ok(root) = toml::de::DeTable::parse(text) {
            record_table(text, "", root.get_ref(), &mut lines);
        }
        SourceMap {
            path: path.to_path_buf(),
            lines,
        }
    }

    /// The origin of `key`, or of its nearest written parent table.
    pub fn origin_of(&self, key: &str) -> Origin {
        let mut probe = key;
        loop {
            if let Some(line) = self.lines.get(probe) {
                return self.at_line(*line);
            }
            match probe.rsplit_once('.') {
                Some((parent, _)) => probe = parent,
                None => return self.at_line(0),
            }
        }
    }

    /// The origin for a known line of this file.
    pub fn at_line(&self, line: usize) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line,
        }
    }

    /// The file this map describes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn record_table(
    text: &str,
    prefix: &str,
    table: &toml::de::DeTable<'_>,
    lines: &mut BTreeMap<String, usize>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        lines.insert(path.clone(), line_of(text, key.span().start));
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            record_table(text, &path, inner, lines);
        }
    }
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_nested_keys_to_their_lines() {
        let text = "[node]\nname = \"n1\"\n\nworkers = 4\n\n[agents.echo]\nweight = 0.5\n";
        let map = SourceMap::build(Path::new("n1.toml"), text);
        assert_eq!(map.origin_of("node.workers").to_string(), "n1.toml:4");
        assert_eq!(map.origin_of("agents.echo.weight").to_string(), "n1.toml:7");
        // A key that is not written points at its table.
        assert_eq!(
            map.origin_of("agents.echo.handler").to_string(),
            "n1.toml:6"
        );
    }
}
