//! Reading a model file (and the appliance's config): YAML or TOML, with syntax
//! and type errors located by file, line and column ([`LoadError`]).

use crate::model::Model;
use std::path::{Path, PathBuf};

impl Model {
    /// Parses YAML. Errors name the source as `<yaml>`.
    pub fn from_yaml_str(text: &str) -> Result<Self, LoadError> {
        parse_yaml(text, "<yaml>")
    }

    /// Parses TOML. Errors name the source as `<toml>`.
    pub fn from_toml_str(text: &str) -> Result<Self, LoadError> {
        parse_toml(text, "<toml>")
    }

    /// Renders YAML (what [`Model::from_yaml_str`] reads back).
    pub fn to_yaml_string(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// Loads a model file: YAML for `.yaml`/`.yml`, TOML for `.toml`, JSON for
/// `.json` (what the API and `ctl policy draft` give). Syntax and type
/// errors carry the file, line and column; the content is not validated yet.
pub fn load_model(path: &Path) -> Result<Model, LoadError> {
    load_file(path)
}

/// Why a model (or config) file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unsupported policy file type (expected .yaml, .yml, .toml or .json)", path.display())]
    UnknownFormat { path: PathBuf },
    /// A syntax or type error; `line` and `column` are 1-based when the parser knows them.
    #[error("{file}{}: {message}", location(*line, *column))]
    Parse {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl LoadError {
    /// The 1-based line of a parse error, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::Parse { line, .. } => *line,
            _ => None,
        }
    }
}

/// Loads any serde document from a YAML (`.yaml`/`.yml`) or TOML (`.toml`) file,
/// with syntax and type errors located by file, line and column. An empty YAML
/// document is `T::default()`. The model file and the appliance's config file
/// are both read through it.
pub fn load_file<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, LoadError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str, &str) -> Result<T, LoadError> = match ext.as_deref() {
        Some("yaml" | "yml") => parse_yaml,
        Some("toml") => parse_toml,
        Some("json") => parse_json,
        _ => {
            return Err(LoadError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse JSON; errors name the source `file`, line and column.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, LoadError> {
    serde_json::from_str(text).map_err(|e| LoadError::Parse {
        file: file.to_string(),
        line: Some(e.line()),
        column: Some(e.column()),
        message: e.to_string(),
    })
}

/// Parse YAML; errors name the source `file`.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    file: &str,
) -> Result<T, LoadError> {
    // An empty (or comment-only) document is an empty policy.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(T::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        // serde_yaml appends " at line L column C"; the location is reported separately.
        if loc.is_some() {
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
        }
        LoadError::Parse {
            file: file.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    })
}

/// Parse TOML; errors name the source `file`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, LoadError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        LoadError::Parse {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
