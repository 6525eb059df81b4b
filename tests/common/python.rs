//! The training venv's Python, for tests that run the training code.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `OSPREY_PYTHON`, or the venv models/train/setup.sh makes, when it can
/// import `modules` (a Python import list, e.g. "numpy").
pub fn training_python(modules: &str) -> Option<PathBuf> {
    let p = std::env::var_os("OSPREY_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("models/train/.venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(p)
}

/// `OSPREY_TOOLS_PYTHON`, or the venv tests/tools/setup.sh makes, when it
/// can import `modules` (the protocol peers: aioquic).
pub fn tools_python(modules: &str) -> Option<PathBuf> {
    let p = std::env::var_os("OSPREY_TOOLS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/.venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(p)
}
