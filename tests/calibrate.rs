//! `osprey calibrate` on real benign traffic: the lab's benign captures
//! (`shared/lab-pcaps/benign_*.pcap`) and conn.logs of the Zeek oracle's
//! real-world traces (written by `osprey replay` as each case's Zeek run
//! would: Zeek's own baselines mask their times).
//!
//! What it promises, each checked here:
//! - after calibration each model flags at most `target_fpr` of the
//!   calibration input, measured by calibrate itself, by calibrating its
//!   own output again (which must keep every threshold), and by `osprey
//!   replay` of the captures with the calibrated files;
//! - no threshold goes down, and the rules act on no source of the input;
//! - `osprey check` accepts the calibrated specs and rules;
//! - too few records, an unreadable input or a target rate out of range
//!   are refused with what is wrong named, and the output folder receives
//!   nothing.
//!
//! Under CI (`CI=true`) missing data fails the tests instead of skipping.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::oracle::{case_dirs, invocation, oracle_dir, CaseMeta};
use serde_json::Value;

fn osprey(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(args)
        .output()
        .expect("running osprey")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

use common::missing;

/// The lab's benign captures.
fn benign_pcaps() -> Option<Vec<PathBuf>> {
    let Some(dir) = common::lab_dir() else {
        missing("shared/lab-pcaps");
        return None;
    };
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("listing the lab")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("benign_") && n.ends_with(".pcap"))
        })
        .collect();
    pcaps.sort();
    if pcaps.is_empty() {
        missing("shared/lab-pcaps/benign_*.pcap");
        return None;
    }
    Some(pcaps)
}

/// conn.logs of the Zeek oracle's traces, written into `dir`.
fn oracle_conn_logs(dir: &Path) -> Option<Vec<PathBuf>> {
    let oracle = oracle_dir();
    if !oracle.is_dir() {
        missing("shared/zeek-oracle");
        return None;
    }
    let mut logs = Vec::new();
    for case in case_dirs(&oracle).expect("listing the oracle") {
        let meta = CaseMeta::load(&case).expect("case.toml");
        let name = case.file_name().unwrap_or_default().to_owned();
        let out = dir.join(&name);
        let mut args: Vec<std::ffi::OsString> =
            invocation(&meta).args.iter().map(Into::into).collect();
        args.extend(["--log-dir".into(), out.clone().into()]);
        args.extend(meta.pcaps.iter().map(|p| case.join(p).into()));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
        let done = osprey(&refs);
        if !done.status.success() && text(&done).contains("read error after 0 packets") {
            // A capture osprey cannot read yet (tests/conformance.rs counts it).
            continue;
        }
        assert!(done.status.success(), "replaying {name:?}: {}", text(&done));
        logs.push(out.join("conn.log"));
    }
    assert!(
        logs.len() > 50,
        "only {} oracle traces replayed",
        logs.len()
    );
    Some(logs)
}

fn calibrate(args: &[&std::ffi::OsStr], inputs: &[PathBuf]) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["calibrate".as_ref()];
    all.extend_from_slice(args);
    all.extend(inputs.iter().map(|p| p.as_os_str()));
    osprey(&all)
}

/// Copies of the bundled models whose alert settings flag every
/// connection (anomaly threshold 0, classifier min_probability 0), with
/// their ONNX files: calibration must raise both, however the bundled
/// models are retrained.
fn strict_models(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out = Vec::new();
    for name in ["osprey-classifier", "osprey-anomaly"] {
        let spec = models.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&spec).expect("a bundled spec");
        let mut doc: toml::Table = toml::from_str(&text).expect("the spec is TOML");
        let onnx = doc["model"]["onnx"].as_str().expect("onnx").to_string();
        std::fs::copy(models.join(&onnx), dir.join(&onnx)).expect("copying the ONNX file");
        if let Some(outputs) = doc.get_mut("output").and_then(|o| o.as_array_mut()) {
            for o in outputs.iter_mut().filter(|o| o.get("threshold").is_some()) {
                o["threshold"] = toml::Value::Float(0.0);
            }
        }
        if let Some(alert) = doc.get_mut("alert").and_then(|a| a.as_table_mut()) {
            alert.insert("min_probability".into(), toml::Value::Float(0.0));
        }
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(&doc).expect("TOML")).expect("writing a spec");
        out.push(path);
    }
    out
}

fn model_args(specs: &[PathBuf]) -> Vec<&std::ffi::OsStr> {
    specs
        .iter()
        .flat_map(|p| ["--model".as_ref(), p.as_os_str()])
        .collect()
}

fn report(out: &Path) -> Value {
    let p = out.join("calibration.json");
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).expect("calibration.json is JSON")
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The models' and rules' promises, as calibration.json states them.
fn check_report(r: &Value) {
    let fpr = f(r, "target_fpr");
    let n = u(r, "records");
    let allowed = u(r, "allowed_flagged");
    assert!(n >= u(r, "min_records"));
    assert_eq!(allowed, (n as f64 * fpr).floor() as u64);
    for m in r["models"].as_array().expect("models") {
        assert!(f(m, "new") >= f(m, "old"), "a threshold went down: {m}");
        let after = u(m, "flagged_after");
        if !m["kept"].as_bool().unwrap_or(true) && !m["capped"].as_bool().unwrap_or(true) {
            assert!(after <= allowed, "flagged {after} > {allowed}: {m}");
            assert!(f(m, "share_after") <= fpr, "{m}");
        }
        assert!(after <= u(m, "flagged_before"), "{m}");
    }
    for t in r["rules"]["thresholds"]
        .as_array()
        .expect("rule thresholds")
    {
        assert!(
            u(t, "new") >= u(t, "old"),
            "a rule threshold went down: {t}"
        );
        if !t["still_triggered"].as_bool().unwrap_or(true) {
            assert!(f(t, "benign_max") < u(t, "new") as f64, "{t}");
        }
    }
}

/// `osprey check` accepts every spec and the rules, with the calibrated
/// models and with the bundled ones.
fn check_accepts(out: &Path, r: &Value) {
    let mut args: Vec<std::ffi::OsString> = vec!["check".into()];
    for m in r["models"].as_array().expect("models") {
        let spec = out.join(m["written"].as_str().expect("written"));
        args.extend(["--model".into(), spec.into()]);
    }
    args.extend(["--rules".into(), out.join("rules.yaml").into()]);
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let done = osprey(&refs);
    assert!(done.status.success(), "osprey check: {}", text(&done));
    let done = osprey(&[
        "check".as_ref(),
        "--rules".as_ref(),
        out.join("rules.yaml").as_os_str(),
    ]);
    assert!(
        done.status.success(),
        "osprey check --rules: {}",
        text(&done)
    );
}

#[test]
fn calibration_on_real_benign_traffic_meets_the_target_and_check_accepts_it() {
    let Some(pcaps) = benign_pcaps() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(logs) = oracle_conn_logs(&tmp.path().join("oracle")) else {
        return;
    };
    let inputs: Vec<PathBuf> = logs.into_iter().chain(pcaps).collect();
    let strict = strict_models(&tmp.path().join("strict"));
    let out = tmp.path().join("calibrated");
    let mut args = model_args(&strict);
    args.extend([
        "--target-fpr".as_ref(),
        "0.01".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let done = calibrate(&args, &inputs);
    assert!(done.status.success(), "osprey calibrate: {}", text(&done));
    eprintln!("{}", String::from_utf8_lossy(&done.stdout));
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(said.contains("only raises thresholds"), "{said}");
    let r = report(&out);
    check_report(&r);
    // The strict copies flag everything: both must have been raised.
    for m in r["models"].as_array().expect("models") {
        assert!(!m["kept"].as_bool().unwrap_or(true), "{m}");
        assert_eq!(u(m, "flagged_before"), u(&r, "records"), "{m}");
    }
    check_accepts(&out, &r);
    // The bundled rules keep their comments.
    let rules = std::fs::read_to_string(out.join("rules.yaml")).expect("rules.yaml");
    assert!(rules.contains("# Port scans and host sweeps"), "{rules}");
    assert_eq!(r["rules"]["rewritten"], "in_place");

    // The calibrated files, calibrated again on the same traffic: they
    // flag what calibration said, so every threshold stays.
    let again = tmp.path().join("again");
    let mut args: Vec<std::ffi::OsString> = vec![
        "--target-fpr".into(),
        "0.01".into(),
        "--rules".into(),
        out.join("rules.yaml").into(),
        "--out".into(),
        again.clone().into(),
    ];
    for m in r["models"].as_array().expect("models") {
        args.extend([
            "--model".into(),
            out.join(m["written"].as_str().expect("written")).into(),
        ]);
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let done = calibrate(&refs, &inputs);
    assert!(done.status.success(), "calibrating again: {}", text(&done));
    let r2 = report(&again);
    check_report(&r2);
    for (m, m2) in r["models"]
        .as_array()
        .expect("models")
        .iter()
        .zip(r2["models"].as_array().expect("models"))
    {
        assert!(m2["kept"].as_bool().unwrap_or(false), "{m2}");
        assert_eq!(m2["flagged_before"], m["flagged_after"], "{m2}");
        assert!(u(m2, "flagged_before") <= u(&r2, "allowed_flagged"), "{m2}");
    }
    for t in r2["rules"]["thresholds"].as_array().expect("thresholds") {
        assert_eq!(t["new"], t["old"], "{t}");
    }
}

/// Rules strict enough to act on the lab's benign hosts.
const STRICT_RULES: &str = "\
# Rules that fire on everyday traffic (for the test).
rules:
  # Any failed attempt at all.
  - name: port-scan
    priority: 10
    evidence:
      window_secs: 300
      failed_targets: 1
    action:
      kind: block
      ttl_secs: 300
  - name: chatty
    priority: 20
    evidence: { window_secs: 60, conns: 2 }
    action: { kind: alert }
  - name: flagged-source
    priority: 1000
    match:
      flagged: true
    evidence:
      window_secs: 300
      flagged: 1
    action:
      kind: alert
";

/// Replays each capture on its own with the given models and rules;
/// returns per model the connections it flagged, and the actions taken.
fn replay_each(
    pcaps: &[PathBuf],
    models: &[PathBuf],
    rules: &Path,
    dir: &Path,
) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut flagged: BTreeMap<String, u64> = BTreeMap::new();
    let mut actions = Vec::new();
    for (i, pcap) in pcaps.iter().enumerate() {
        let out = dir.join(i.to_string());
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "replay".as_ref(),
            "-q".as_ref(),
            "--log-dir".as_ref(),
            out.as_os_str(),
        ];
        for m in models {
            args.extend(["--model".as_ref(), m.as_os_str()]);
        }
        args.extend(["--rules".as_ref(), rules.as_os_str(), pcap.as_os_str()]);
        let done = osprey(&args);
        assert!(
            done.status.success(),
            "replaying {}: {}",
            pcap.display(),
            text(&done)
        );
        // A connection is flagged by a model when any of its records was.
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let alerts = std::fs::read_to_string(out.join("alerts.log")).expect("alerts.log");
        for line in alerts.lines() {
            let a: Value = serde_json::from_str(line).expect("an alerts.log line");
            let uid = a["uid"].as_str().expect("uid").to_string();
            for v in a["osprey"]["verdicts"].as_array().expect("verdicts") {
                if v["flagged"].as_bool() == Some(true) {
                    let model = v["model"].as_str().expect("model").to_string();
                    if seen.insert((model.clone(), uid.clone())) {
                        *flagged.entry(model).or_default() += 1;
                    }
                }
            }
        }
        let acts = std::fs::read_to_string(out.join("actions.log")).expect("actions.log");
        actions.extend(acts.lines().map(|l| format!("{}: {l}", pcap.display())));
    }
    (flagged, actions)
}

/// Oracle traces with the most records (real-world traffic the bundled
/// models flag a good share of), replayed as captures in the replay test.
const ORACLE_CAPTURES: [&str; 9] = [
    "scripts.policy.protocols.conn.mac-logging__conn3",
    "core.cisco-fabric-path",
    "core.tcp.rxmit-history__conn-2",
    "scripts.policy.protocols.conn.mac-logging__conn1",
    "scripts.base.protocols.ssh.half-duplex-client",
    "scripts.base.protocols.ssh.half-duplex-server",
    "core.tunnels.teredo",
    "core.tunnels.gtp.inner_teredo",
    "scripts.base.protocols.pop3.basic",
];

/// The captures of `ORACLE_CAPTURES`.
fn oracle_captures() -> Option<Vec<PathBuf>> {
    let oracle = oracle_dir();
    let mut out = Vec::new();
    for name in ORACLE_CAPTURES {
        let case = oracle.join(name);
        if !case.join("case.toml").is_file() {
            missing(&format!("shared/zeek-oracle/{name}"));
            return None;
        }
        let meta = CaseMeta::load(&case).expect("case.toml");
        out.extend(meta.pcaps.iter().map(|p| case.join(p)));
    }
    Some(out)
}

#[test]
fn replaying_the_calibrated_files_flags_no_more_than_the_target_and_acts_on_nobody() {
    let Some(mut pcaps) = benign_pcaps() else {
        return;
    };
    let Some(oracle) = oracle_captures() else {
        return;
    };
    pcaps.extend(oracle);
    let tmp = tempfile::tempdir().expect("tempdir");
    let strict = tmp.path().join("strict.yaml");
    std::fs::write(&strict, STRICT_RULES).expect("writing the rules");
    let strict_specs = strict_models(&tmp.path().join("models"));
    // Before: the strict rules act on benign hosts.
    let (_, before) = replay_each(&pcaps, &strict_specs, &strict, &tmp.path().join("before"));
    assert!(
        !before.is_empty(),
        "the strict rules should act on the benign captures"
    );

    let out = tmp.path().join("calibrated");
    let mut args = model_args(&strict_specs);
    args.extend([
        "--target-fpr".as_ref(),
        "0.01".as_ref(),
        "--rules".as_ref(),
        strict.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let done = calibrate(&args, &pcaps);
    assert!(done.status.success(), "osprey calibrate: {}", text(&done));
    eprintln!("{}", String::from_utf8_lossy(&done.stdout));
    let r = report(&out);
    check_report(&r);
    check_accepts(&out, &r);
    let raised: Vec<&Value> = r["rules"]["thresholds"]
        .as_array()
        .expect("thresholds")
        .iter()
        .filter(|t| t["new"] != t["old"])
        .collect();
    assert!(
        raised.len() >= 2,
        "the strict thresholds should rise: {}",
        r["rules"]
    );
    let rules = std::fs::read_to_string(out.join("rules.yaml")).expect("rules.yaml");
    assert!(
        rules.contains("# Any failed attempt at all."),
        "comments kept: {rules}"
    );

    // After: replayed as the daemon would run them, the calibrated files
    // flag no more than calibration allowed, and nobody is acted on.
    let models: Vec<PathBuf> = r["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| out.join(m["written"].as_str().expect("written")))
        .collect();
    let (flagged, after) = replay_each(
        &pcaps,
        &models,
        &out.join("rules.yaml"),
        &tmp.path().join("after"),
    );
    assert!(
        after.is_empty(),
        "calibrated rules acted on benign hosts:\n{}",
        after.join("\n")
    );
    let allowed = u(&r, "allowed_flagged");
    for m in r["models"].as_array().expect("models") {
        assert_eq!(m["kept"], false, "the strict copies must be raised: {m}");
    }
    for m in r["models"].as_array().expect("models") {
        let name = m["name"].as_str().expect("name");
        let n = flagged.get(name).copied().unwrap_or(0);
        assert_eq!(
            n,
            u(m, "flagged_after"),
            "replay and calibrate disagree on {name}"
        );
        assert!(n <= allowed || m["kept"] == true, "{name}: {n} > {allowed}");
    }
}

#[test]
fn too_few_records_are_refused_naming_the_number_and_nothing_is_written() {
    let Some(pcaps) = benign_pcaps() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    // A fresh folder is not created...
    let out = tmp.path().join("out");
    let done = calibrate(
        &[
            "--target-fpr".as_ref(),
            "0.001".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        &pcaps,
    );
    let said = text(&done);
    assert!(!done.status.success(), "{said}");
    assert!(said.contains("at least 10000"), "{said}");
    assert!(!out.exists(), "the output folder was created");
    // ... and a folder with an earlier calibration is left as it was.
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("rules.yaml"), "earlier").expect("write");
    let done = calibrate(
        &[
            "--target-fpr".as_ref(),
            "0.002".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        &pcaps,
    );
    let said = text(&done);
    assert!(
        !done.status.success() && said.contains("at least 5000"),
        "{said}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("rules.yaml")]);
    assert_eq!(
        std::fs::read_to_string(out.join("rules.yaml"))
            .ok()
            .as_deref(),
        Some("earlier")
    );
    // No staging folder is left behind.
    let stray: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".osprey-calibrate"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn an_unreadable_input_is_named_with_the_reason() {
    let Some(pcaps) = benign_pcaps() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let absent = tmp.path().join("absent.pcap");
    let garbage = tmp.path().join("notes.txt");
    std::fs::write(&garbage, "this is not a capture\n").expect("write");
    for (bad, reason) in [(&absent, "No such file"), (&garbage, "#fields")] {
        let mut inputs = pcaps.clone();
        inputs.insert(1, bad.clone());
        let done = calibrate(
            &[
                "--target-fpr".as_ref(),
                "0.05".as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
            &inputs,
        );
        let said = text(&done);
        assert!(!done.status.success(), "{said}");
        assert!(
            said.contains(&bad.display().to_string()) && said.contains(reason),
            "{said}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn a_target_rate_out_of_range_is_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    for bad in ["0", "0.7", "-0.1", "lots"] {
        let flag = format!("--target-fpr={bad}");
        let done = calibrate(
            &[flag.as_ref(), "--out".as_ref(), out.as_os_str()],
            &[tmp.path().join("x.pcap")],
        );
        let said = text(&done);
        assert!(
            !done.status.success() && said.contains("--target-fpr"),
            "{bad}: {said}"
        );
        assert!(!out.exists());
    }
}
