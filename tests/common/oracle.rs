//! The Zeek oracle's cases (`shared/zeek-oracle`): their metadata and the
//! osprey command line that reproduces each case's Zeek invocation. Shared
//! by the conformance and feature-parity tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// Protocol scripts whose analyzers osprey implements for `service`.
pub const ANALYZERS: [&str; 14] = [
    "http", "dns", "ssl", "ssh", "ftp", "smtp", "pop3", "imap", "irc", "dhcp", "ntp", "quic",
    "socks", "krb",
];

// ---------------------------------------------------------------------------
// Case metadata and the osprey command line

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bare,
    Default,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineFormat {
    ZeekAscii,
    ZeekCutM,
    ZeekCutNoheader,
}

/// The parts of `case.toml` the harness needs; the rest is documentation.
#[derive(Deserialize)]
pub struct CaseMeta {
    pub mode: Mode,
    pub pcaps: Vec<String>,
    pub expected: String,
    pub baseline_format: BaselineFormat,
    pub rows: usize,
    pub ts_masked: bool,
    #[serde(default)]
    pub scripts: Vec<String>,
    #[serde(default)]
    pub ignore_checksums: bool,
    #[serde(default)]
    pub bpf_filter: String,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub extra_columns: Vec<String>,
    #[serde(default)]
    pub likely_server_ports: Vec<String>,
    #[serde(default)]
    pub conn_affecting_settings: Vec<String>,
}

impl CaseMeta {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("case.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The flags that reproduce a case's Zeek invocation, plus the settings
/// that could not be expressed as flags (reported, not silently dropped).
pub struct Invocation {
    pub args: Vec<String>,
    pub unmapped: Vec<String>,
}

pub fn invocation(meta: &CaseMeta) -> Invocation {
    let mut args: Vec<String> = [
        "replay",
        "--no-models",
        "--seed",
        "1",
        "-q",
        "--format",
        "zeek",
    ]
    .map(String::from)
    .to_vec();
    if meta.ignore_checksums {
        args.push("-C".into());
    }
    if !meta.bpf_filter.is_empty() {
        args.extend(["-f".into(), meta.bpf_filter.clone()]);
    }
    match meta.mode {
        Mode::Bare => {
            args.extend([
                "--likely-server-ports".into(),
                meta.likely_server_ports.join(","),
            ]);
            args.extend(["--analyzers".into(), bare_analyzers(&meta.scripts)]);
        }
        Mode::Default => args.extend(["--analyzers".into(), "all".into()]),
    }
    if let Some(extra) = extra_columns_flag(&meta.extra_columns) {
        args.extend(["--extra-columns".into(), extra]);
    }
    // Policy scripts that replace the connection key are a setting of
    // osprey's, not prose.
    if meta
        .scripts
        .iter()
        .any(|s| s.contains("conn_key/vlan_fivetuple"))
    {
        args.extend(["--set".into(), "ConnKey::factory=vlan_fivetuple".into()]);
    }
    let mut unmapped = Vec::new();
    for setting in &meta.conn_affecting_settings {
        match parse_redef(setting) {
            Some(assignment) => args.extend(["--set".into(), assignment]),
            None => unmapped.push(setting.clone()),
        }
    }
    Invocation { args, unmapped }
}

/// In bare mode only the loaded protocol scripts can confirm a service, so
/// osprey must not run analyzers Zeek did not load.
pub fn bare_analyzers(scripts: &[String]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for script in scripts {
        for (pos, _) in script.match_indices("base/protocols/") {
            let rest = &script[pos + "base/protocols/".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            if ANALYZERS.contains(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

pub fn extra_columns_flag(extra: &[String]) -> Option<String> {
    let has = |names: &[&str]| extra.iter().any(|c| names.contains(&c.as_str()));
    let mut sets = Vec::new();
    if has(&["orig_l2_addr", "resp_l2_addr"]) {
        sets.push("mac");
    }
    if has(&["vlan", "inner_vlan"]) {
        sets.push("vlan");
    }
    if has(&["community_id"]) {
        sets.push("community_id");
    }
    (!sets.is_empty()).then(|| sets.join(","))
}

/// Turns a documented Zeek redef such as `likely_server_ports += { 40190/udp }
/// (comment)` into `likely_server_ports+={40190/udp}` for `osprey --set`.
/// Prose descriptions (BPF filter, VLAN key) yield `None`.
pub fn parse_redef(setting: &str) -> Option<String> {
    let name_end = setting
        .find(|c: char| !(c.is_ascii_alphabetic() || c == '_' || c == ':'))
        .unwrap_or(setting.len());
    let name = &setting[..name_end];
    let rest = setting[name_end..].trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("+=") {
        ("+=", r)
    } else if let Some(r) = rest.strip_prefix('=') {
        ("=", r)
    } else {
        return None;
    };
    if name.is_empty() {
        return None;
    }
    let rest = rest.trim_start();
    let value: String = if rest.starts_with('{') {
        let close = rest.find('}')?;
        rest[..=close].split_whitespace().collect()
    } else {
        rest.split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    (!value.is_empty()).then(|| format!("{name}{op}{value}"))
}

pub fn oracle_dir() -> PathBuf {
    let shared = std::env::var_os("OSPREY_SHARED").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
        PathBuf::from,
    );
    shared.join("zeek-oracle")
}

pub fn case_dirs(oracle: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(oracle).with_context(|| format!("listing {}", oracle.display()))?
    {
        let path = entry?.path();
        if path.join("case.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}
