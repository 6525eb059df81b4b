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

/// One lab capture; `None` (with the reason printed) when it is absent.
#[allow(dead_code)]
pub fn lab_pcap(name: &str) -> Option<PathBuf> {
    let p = lab_dir().map(|d| d.join(name)).filter(|p| p.is_file());
    if p.is_none() {
        eprintln!("skipped: ../shared/lab-pcaps/{name} is absent");
    }
    p
}
