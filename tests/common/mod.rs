pub mod netns;
pub mod oracle;
pub mod python;

use std::path::{Path, PathBuf};

/// `../shared/lab-pcaps` (or `$OSPREY_SHARED/lab-pcaps`), when present.
#[allow(dead_code)]
pub fn lab_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("OSPREY_SHARED").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
        PathBuf::from,
    );
    let d = shared.join("lab-pcaps");
    d.is_dir().then_some(d)
}

/// A data set a test reads is missing: a failure under CI (`CI=true`,
/// where `../shared` sits beside the clone), a printed skip elsewhere.
#[allow(dead_code)]
pub fn missing(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is missing: under CI the shared folder sits beside the repo");
    }
    eprintln!("SKIPPED: {what} is missing");
}

/// One lab capture; `None` (with the reason printed, or a failure under
/// CI) when it is absent.
#[allow(dead_code)]
pub fn lab_pcap(name: &str) -> Option<PathBuf> {
    let p = lab_dir().map(|d| d.join(name)).filter(|p| p.is_file());
    if p.is_none() {
        missing(&format!("../shared/lab-pcaps/{name}"));
    }
    p
}
