//! Python interpreters from the project's venvs: the training venv (tests
//! that run the training code) and the test tools venv (protocol peers).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `OSPREY_PYTHON`, or the venv models/train/setup.sh makes, when it can
/// import `modules` (a Python import list, e.g. "numpy").
pub fn training_python(modules: &str) -> Option<PathBuf> {
    python_with("OSPREY_PYTHON", "models/train/.venv/bin/python", modules)
}

/// `OSPREY_TOOLS_PYTHON`, or the venv tests/tools/setup.sh makes, when it
/// can import `modules` (the protocol peers: aioquic).
pub fn tools_python(modules: &str) -> Option<PathBuf> {
    python_with(
        "OSPREY_TOOLS_PYTHON",
        "tests/tools/.venv/bin/python",
        modules,
    )
}

/// The interpreter `env` names, or `venv` below the repository, if it can
/// import `modules`.
fn python_with(env: &str, venv: &str, modules: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(venv),
        PathBuf::from,
    );
    let ok = Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(p)
}
