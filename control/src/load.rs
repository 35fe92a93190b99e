//! Reading a model file: YAML or TOML, with syntax and type errors located by
//! file, line and column (reported as the dataplane's [`SpecError`]).

use crate::model::Model;
use dataplane::policy::{self, SpecError};
use std::path::Path;

impl Model {
    /// Parses YAML. Errors name the source as `<yaml>`.
    pub fn from_yaml_str(text: &str) -> Result<Self, SpecError> {
        policy::parse_yaml(text, "<yaml>")
    }

    /// Parses TOML. Errors name the source as `<toml>`.
    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        policy::parse_toml(text, "<toml>")
    }

    /// Renders YAML (what [`Model::from_yaml_str`] reads back).
    pub fn to_yaml_string(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// Loads a model file: YAML for `.yaml`/`.yml`, TOML for `.toml`. Syntax and type
/// errors carry the file, line and column; the content is not validated yet.
pub fn load_model(path: &Path) -> Result<Model, SpecError> {
    policy::load_file(path)
}

pub(crate) use dataplane::policy::line_col;
