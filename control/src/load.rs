//! Reading a model file: YAML or TOML, with syntax and type errors located by
//! file, line and column (reported as the dataplane's [`SpecError`]).

use crate::model::Model;
use dataplane::policy::SpecError;
use std::path::Path;

impl Model {
    /// Parses YAML. Errors name the source as `<yaml>`.
    pub fn from_yaml_str(text: &str) -> Result<Self, SpecError> {
        parse_yaml(text, "<yaml>")
    }

    /// Parses TOML. Errors name the source as `<toml>`.
    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        parse_toml(text, "<toml>")
    }

    /// Renders YAML (what [`Model::from_yaml_str`] reads back).
    pub fn to_yaml_string(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// Loads a model file: YAML for `.yaml`/`.yml`, TOML for `.toml`. Syntax and type
/// errors carry the file, line and column; the content is not validated yet.
pub fn load_model(path: &Path) -> Result<Model, SpecError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str, &str) -> Result<Model, SpecError> = match ext.as_deref() {
        Some("yaml" | "yml") => parse_yaml,
        Some("toml") => parse_toml,
        _ => {
            return Err(SpecError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

fn parse_yaml(text: &str, file: &str) -> Result<Model, SpecError> {
    // An empty (or comment-only) document is an empty model.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Model::default());
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
        SpecError::Parse {
            file: file.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    })
}

fn parse_toml(text: &str, file: &str) -> Result<Model, SpecError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        SpecError::Parse {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

/// 1-based line and column (in characters) of byte offset `at`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
