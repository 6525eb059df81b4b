//! Retraining reproduces the bundled models: models/train/train.py run with
//! the committed seed on the lab captures gives the same validation figures
//! as models/train/metrics.json, and (on the same CPU family, where BLAS
//! rounds the same) byte-identical model files.
//!
//! Needs the training venv (models/train/setup.sh; CI installs it) and the
//! lab captures; skips with a message otherwise (fails in CI without the
//! venv).

mod common;

use common::python::training_python;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn retraining_reproduces_the_bundled_models() {
    let lab = std::env::var_os("OSPREY_SHARED")
        .map_or_else(|| repo("../shared"), PathBuf::from)
        .join("lab-pcaps");
    if !lab.join("labels.csv").is_file() {
        eprintln!("SKIPPED: no lab captures at {}", lab.display());
        return;
    }
    let Some(python) = training_python("sklearn, skl2onnx, onnx") else {
        let msg = "no training venv (models/train/setup.sh, or OSPREY_PYTHON)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}: CI installs it (.ci/run)");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let metrics = out.path().join("metrics.json");
    let done = Command::new(python)
        .arg(repo("models/train/train.py"))
        .arg("--lab")
        .arg(&lab)
        .arg("--osprey")
        .arg(env!("CARGO_BIN_EXE_osprey"))
        .arg("--out")
        .arg(out.path())
        .arg("--metrics")
        .arg(&metrics)
        .output()
        .expect("running train.py");
    assert!(
        done.status.success(),
        "train.py failed:\n{}\n{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    let read_json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("metrics")).expect("json")
    };
    let committed = read_json(&repo("models/train/metrics.json"));
    let fresh = read_json(&metrics);
    if committed["rows"] != fresh["rows"] {
        eprintln!(
            "SKIPPED comparison: this lab is not the one the models were trained on \
             (validation rows {} vs {}); retraining itself worked",
            fresh["rows"]["validation"], committed["rows"]["validation"]
        );
        return;
    }
    assert_eq!(
        committed, fresh,
        "retraining with the committed seed gave other validation figures"
    );
    for f in [
        "osprey-classifier.onnx",
        "osprey-classifier.toml",
        "osprey-anomaly.onnx",
        "osprey-anomaly.toml",
    ] {
        let same = std::fs::read(repo(&format!("models/{f}"))).ok()
            == std::fs::read(out.path().join(f)).ok();
        eprintln!(
            "{f}: {}",
            if same {
                "byte-identical"
            } else {
                "differs in bytes (BLAS rounding on this CPU); the figures are the same"
            }
        );
    }
}
