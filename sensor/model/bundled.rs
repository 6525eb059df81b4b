//! The models shipped inside the binary (models/README.md), so that osprey
//! scores out of the box with no file beside it; and loading a list of
//! spec files, with the bundled pair as the default.

use std::path::{Path, PathBuf};

use super::{Model, ModelError};
use crate::features::{FeatureSpec, SpecError};

const BUNDLED: [(&str, &[u8]); 4] = [
    (
        "osprey-classifier.toml",
        include_bytes!("../../models/osprey-classifier.toml"),
    ),
    (
        "osprey-classifier.onnx",
        include_bytes!("../../models/osprey-classifier.onnx"),
    ),
    (
        "osprey-anomaly.toml",
        include_bytes!("../../models/osprey-anomaly.toml"),
    ),
    (
        "osprey-anomaly.onnx",
        include_bytes!("../../models/osprey-anomaly.onnx"),
    ),
];

/// Why a model set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("writing the bundled models to {path}: {source}")]
    Unpack {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn load(p: &Path) -> Result<Model, LoadError> {
    Ok(Model::load(FeatureSpec::load(p)?)?)
}

/// The bundled specs, in the order they are loaded.
const BUNDLED_SPECS: [&str; 2] = ["osprey-classifier.toml", "osprey-anomaly.toml"];

/// Writes the bundled specs and ONNX files into `dir` and returns the
/// specs' paths: tract loads from a path, and `osprey calibrate` copies
/// the files it calibrates.
pub fn unpack(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    for (name, bytes) in BUNDLED {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| LoadError::Unpack { path, source })?;
    }
    Ok(BUNDLED_SPECS.iter().map(|n| dir.join(n)).collect())
}

/// Loads every spec (with the ONNX file it names), or the bundled
/// classifier and anomaly model when `specs` is empty. All or nothing: the
/// first failure is returned.
pub fn load_models(specs: &[PathBuf]) -> Result<Vec<Model>, LoadError> {
    if !specs.is_empty() {
        return specs.iter().map(|p| load(p)).collect();
    }
    // The files live only until loaded.
    let dir = tempfile::Builder::new()
        .prefix("osprey-models-")
        .tempdir()
        .map_err(|source| LoadError::Unpack {
            path: std::env::temp_dir(),
            source,
        })?;
    unpack(dir.path())?.iter().map(|p| load(p)).collect()
}
