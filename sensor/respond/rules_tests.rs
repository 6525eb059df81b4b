use super::*;
use crate::conn::record::{ConnState, Proto};

fn facts() -> Vec<ModelFacts> {
    vec![
        ModelFacts {
            name: "clf".into(),
            labels: vec!["benign".into(), "scan_syn".into(), "flood_syn".into()],
            columns: [
                ("src_resp_ports_60s".to_string(), (0, Transform::Log1p)),
                ("duration".to_string(), (1, Transform::None)),
            ]
            .into_iter()
            .collect(),
        },
        ModelFacts {
            name: "anom".into(),
            labels: vec!["anomalous".into(), "normal".into()],
            columns: HashMap::new(),
        },
    ]
}

fn cx() -> LoadContext {
    LoadContext {
        allowlist: vec![
            "127.0.0.0/8".parse().unwrap(),
            "198.19.255.0/24".parse().unwrap(),
        ],
        hooks: vec!["soar".into()],
        skip_rules_for_absent_models: false,
        max_targets_per_source: 0,
    }
}

fn parse(text: &str) -> Result<RuleSet, RuleError> {
    RuleSet::parse(text, true, &facts(), &cx())
}

fn verdict(label: &str, p: f32, flagged: bool) -> Verdict {
    Verdict {
        label: Some(label.into()),
        class: None,
        probability: Some(p),
        score: Some(p),
        flagged,
    }
}

fn record(state: ConnState, interim: bool) -> ConnRecord {
    let mut r = ConnRecord::skeleton(
        "198.18.0.9".parse().unwrap(),
        40000,
        "198.18.0.1".parse().unwrap(),
        22,
        Proto::Tcp,
    );
    r.conn_state = state;
    r.interim = interim;
    r
}

fn decide(set: &RuleSet, r: &ConnRecord, v: &[Verdict], ports: f64) -> Option<Decision> {
    let f = facts();
    let row = [ports.ln_1p(), 1.0];
    let rows: [&[f64]; 2] = [&row, &[]];
    set.decide(
        &Scored {
            record: r,
            verdicts: v,
            models: &f,
            rows: &rows,
        },
        |_, _| true,
    )
}

const RULES: &str = r#"
rules:
  - name: alert-rest
    priority: 100
    action: { kind: alert }
  - name: scan
    priority: 10
    match: { models: [clf], labels: [scan_syn], min_probability: 0.8, record: interim }
    action: { kind: block, ttl_secs: 60 }
  - name: ports
    priority: 20
    match: { models: [clf], flagged: false, context: { src_resp_ports_60s: { min: 50 } } }
    action: { kind: rate_limit, packets_per_sec: 10, burst: 20, ttl_secs: 30 }
"#;

#[test]
fn first_match_by_priority() {
    let set = parse(RULES).unwrap();
    let names: Vec<_> = set.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["scan", "ports", "alert-rest"]);
    let v = [
        verdict("scan_syn", 0.9, true),
        verdict("normal", 0.1, false),
    ];
    let d = decide(&set, &record(ConnState::REJ, true), &v, 3.0).unwrap();
    assert_eq!(
        (d.rule.as_str(), d.kind.name(), d.model),
        ("scan", "block", Some(0))
    );
    assert_eq!(d.target, "198.18.0.9".parse::<IpAddr>().unwrap());
    // Final records do not match an interim-only rule; the catch-all does.
    let d = decide(&set, &record(ConnState::REJ, false), &v, 3.0).unwrap();
    assert_eq!(d.rule, "alert-rest");
    // Under the probability threshold.
    let low = [
        verdict("scan_syn", 0.75, true),
        verdict("normal", 0.1, false),
    ];
    assert_eq!(
        decide(&set, &record(ConnState::REJ, true), &low, 3.0)
            .unwrap()
            .rule,
        "alert-rest"
    );
}

#[test]
fn context_bounds_read_plain_counts() {
    let set = parse(RULES).unwrap();
    let v = [verdict("benign", 0.9, false), verdict("normal", 0.1, false)];
    // The row holds log1p(60); the rule's bound is on 60.
    let d = decide(&set, &record(ConnState::S0, false), &v, 60.0).unwrap();
    assert_eq!(d.rule, "ports");
    // 49 ports and nothing flagged: no rule (the catch-all wants flagged).
    assert_eq!(decide(&set, &record(ConnState::S0, false), &v, 49.0), None);
}

#[test]
fn addresses_ports_and_states_filter() {
    let set = parse(
        r#"
rules:
  - name: r
    priority: 1
    match: { src: [198.18.0.0/24], not_src: [198.18.0.8/30], dst_ports: [22, "80-90"], conn_state: [REJ] }
    action: { kind: block, ttl_secs: 5 }
"#,
    )
    .unwrap();
    let v = [verdict("scan_syn", 0.9, true)];
    let mut r = record(ConnState::REJ, false);
    r.orig_h = "198.18.0.20".parse().unwrap();
    assert!(decide(&set, &r, &v, 0.0).is_some());
    r.resp_p = 85;
    assert!(decide(&set, &r, &v, 0.0).is_some());
    r.resp_p = 91;
    assert!(decide(&set, &r, &v, 0.0).is_none());
    r.resp_p = 22;
    r.orig_h = "198.18.0.9".parse().unwrap(); // inside not_src
    assert!(decide(&set, &r, &v, 0.0).is_none());
    r.orig_h = "198.18.0.20".parse().unwrap();
    r.conn_state = ConnState::SF;
    assert!(decide(&set, &r, &v, 0.0).is_none());
}

/// Each mistake is refused at load with the rule's name and the key.
#[test]
fn bad_rules_are_refused_naming_rule_and_key() {
    let cases = [
        (
            "match: { models: [nope] }\n    action: { kind: alert }",
            "match.models",
        ),
        (
            "match: { labels: [flood_udp] }\n    action: { kind: alert }",
            "match.labels",
        ),
        (
            "match: { src: [198.18.0.0/33] }\n    action: { kind: alert }",
            "match.src",
        ),
        (
            "match: { context: { nothing: { min: 1 } } }\n    action: { kind: alert }",
            "match.context",
        ),
        ("action: { kind: block, ttl_secs: 0 }", "action.ttl_secs"),
        ("action: { kind: block }", "action.ttl_secs"),
        ("action: { kind: explode, ttl_secs: 5 }", "action.kind"),
        (
            "action: { kind: rate_limit, ttl_secs: 5, burst: 5 }",
            "action",
        ),
        (
            "action: { kind: rate_limit, ttl_secs: 5, packets_per_sec: 5 }",
            "action.burst",
        ),
        (
            "action: { kind: hook, hook: other, ttl_secs: 5 }",
            "action.hook",
        ),
        (
            "match: { src: [127.0.0.1] }\n    action: { kind: block, ttl_secs: 5 }",
            "match.src",
        ),
        (
            "match: { src: [198.19.255.128/25] }\n    action: { kind: block, ttl_secs: 5 }",
            "match.src",
        ),
        (
            "match: { dst_ports: [\"90-80\"] }\n    action: { kind: alert }",
            "match.dst_ports",
        ),
        (
            "match: { conn_state: [XX] }\n    action: { kind: alert }",
            "match.conn_state",
        ),
    ];
    for (body, key) in cases {
        let text = format!("rules:\n  - name: broken\n    priority: 1\n    {body}\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("\"broken\"") && e.contains(key), "{body}: {e}");
    }
    // An allowlisted range is fine for an alert, and a range that only
    // overlaps the allowlist is fine for a block (the runtime check
    // spares the allowlisted part).
    parse("rules:\n  - name: ok2\n    priority: 1\n    match: { src: [198.19.0.0/16] }\n    action: { kind: block, ttl_secs: 5 }\n").unwrap();
    parse("rules:\n  - name: ok\n    priority: 1\n    match: { src: [127.0.0.0/8] }\n    action: { kind: alert }\n").unwrap();
    // Unknown keys name their path.
    let e = parse("rules:\n  - name: x\n    priority: 1\n    action: { kind: alert, ttl: 5 }\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"x\"") && e.contains("action"), "{e}");
    let e = parse("rules:\n  - { name: a, priority: 1, action: { kind: alert } }\n  - { name: a, priority: 2, action: { kind: alert } }\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"a\"") && e.contains("name"), "{e}");
}

/// The bundled rules name the bundled classifier; with other models they
/// lose those rules instead of stopping the daemon.
#[test]
fn absent_models_can_be_skipped() {
    let text = "rules:\n  - { name: a, priority: 1, match: { models: [other] }, action: { kind: alert } }\n  - { name: b, priority: 2, action: { kind: alert } }\n";
    assert!(parse(text)
        .unwrap_err()
        .to_string()
        .contains("match.models"));
    let lenient = LoadContext {
        skip_rules_for_absent_models: true,
        ..cx()
    };
    let set = RuleSet::parse(text, true, &facts(), &lenient).unwrap();
    assert_eq!(set.rules.len(), 1);
    assert_eq!(set.rules[0].name, "b");
}

#[test]
fn the_shipped_rule_files_load_against_the_bundled_models() {
    let models = crate::model::bundled::load_models(&[]).unwrap();
    let facts: Vec<_> = models.iter().map(ModelFacts::of).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let set = RuleSet::load(&dir.join("default.yaml"), &facts, &cx()).unwrap();
    assert!(set.rules.len() >= 4);
    // The examples are disabled, but their keys must all parse.
    let text = std::fs::read_to_string(dir.join("examples.yaml"))
        .unwrap()
        .replace("enabled: false", "enabled: true");
    let set = RuleSet::parse(&text, true, &facts, &cx()).unwrap();
    assert_eq!(set.rules.len(), 3);
}

/// Evidence mistakes are refused at load naming the rule and the key.
#[test]
fn bad_evidence_is_refused_naming_rule_and_key() {
    let cases = [
        (
            "evidence: { window_secs: 60, bogus: 3 }",
            "evidence.bogus",
            "no evidence column",
        ),
        (
            "evidence: { window_secs: 0, failed: 3 }",
            "evidence.window_secs",
            "positive",
        ),
        ("evidence: { failed: 3 }", "evidence.window_secs", "window"),
        (
            "evidence: { window_secs: 1.5, failed: 3 }",
            "evidence.window_secs",
            "whole",
        ),
        (
            "evidence: { window_secs: 60, failed: \"20\" }",
            "evidence.failed",
            "neither a count",
        ),
        (
            "evidence: { window_secs: 60, failed: 2.5 }",
            "evidence.failed",
            "not a count",
        ),
        (
            "evidence: { window_secs: 60, failed: { min: -1 } }",
            "evidence.failed.min",
            "not a count",
        ),
        (
            "evidence: { window_secs: 60, failed: { least: 1 } }",
            "evidence.failed",
            "unknown key",
        ),
        (
            "evidence: { window_secs: 60, failed: { min: 5, max: 2 } }",
            "evidence.failed",
            "above max",
        ),
        (
            "evidence: { window_secs: 60, failed_targets: 100 }",
            "evidence.failed_targets",
            "max_targets_per_source",
        ),
        ("evidence: { window_secs: 60 }", "evidence", "no column"),
        (
            "evidence: { window_secs: 60, flagged: 3 }",
            "evidence",
            "match.models or match.labels",
        ),
        ("evidence: [1, 2]", "evidence", "invalid type"),
    ];
    for (body, key, why) in cases {
        let text = format!(
            "rules:\n  - name: broken\n    priority: 1\n    {body}\n    action: {{ kind: block, ttl_secs: 5 }}\n"
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("\"broken\"") && e.contains(key) && e.contains(why),
            "{body}: {e}"
        );
    }
    let esc = "rules:\n  - name: e\n    priority: 1\n    evidence: { window_secs: 5, failed: 1 }\n    action: { kind: block, ttl_secs: 5, escalate: { factor: 1, max_ttl_secs: 50 } }\n";
    let e = parse(esc).unwrap_err().to_string();
    assert!(e.contains("action.escalate.factor"), "{e}");
    // More distinct windows than the stage keeps.
    let mut text = String::from("rules:\n");
    for w in 1..=5 {
        text += &format!(
            "  - {{ name: w{w}, priority: {w}, evidence: {{ window_secs: {w}, failed: 1 }}, action: {{ kind: alert }} }}\n"
        );
    }
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("\"w5\"") && e.contains("evidence.window_secs"),
        "{e}"
    );
}

#[test]
fn evidence_rules_match_without_verdicts_and_say_what_can_be_forged() {
    let set = parse(
        r#"
rules:
  - name: scan
    priority: 1
    evidence: { window_secs: 300, failed_targets: 20 }
    action: { kind: block, ttl_secs: 300, escalate: { factor: 4, max_ttl_secs: 86400 } }
  - name: brute
    priority: 2
    match: { labels: [scan_syn] }
    evidence: { window_secs: 60, service_verified_flagged: { min: 20 }, failed: { max: 100 } }
    action: { kind: block, ttl_secs: 60 }
  - name: mixed
    priority: 3
    match: { labels: [scan_syn] }
    evidence: { window_secs: 60, verified_flagged: 5, conns: 10 }
    action: { kind: block, ttl_secs: 60 }
"#,
    )
    .unwrap();
    assert_eq!(set.windows, [300.0, 60.0]);
    let forge: Vec<bool> = set.rules.iter().map(Rule::forgeable_evidence).collect();
    assert_eq!(forge, [true, false, true]);
    let r = record(ConnState::REJ, false);
    let f = facts();
    let scored = Scored {
        record: &r,
        verdicts: &[],
        models: &f,
        rows: &[],
    };
    // No verdicts: only the evidence rule can match, and only when its
    // evidence holds.
    let d = set
        .decide(&scored, |i, ev| i == 0 && ev.window == 0)
        .unwrap();
    assert_eq!((d.rule.as_str(), d.model, d.index), ("scan", None, 0));
    assert!(set.decide(&scored, |_, _| false).is_none());
    assert!(summary(&set.rules[0]).contains("failed_targets>=20 in 300s (forgeable"));
    assert!(summary(&set.rules[0]).contains("x4 on repeat"));
    assert!(summary(&set.rules[1]).contains("(unforgeable)"));
}

#[test]
fn classes_no_rule_can_match_are_reported() {
    let set = parse(
        "rules:\n  - { name: a, priority: 1, match: { models: [clf], labels: [scan_syn] }, action: { kind: alert } }\n",
    )
    .unwrap();
    let unused = set.unused_classes(&facts());
    assert_eq!(
        unused,
        [
            ("clf".to_string(), vec!["flood_syn".to_string()]),
            ("anom".to_string(), vec!["anomalous".to_string()]),
        ]
    );
    assert!(parse(RULES).unwrap().unused_classes(&facts()).is_empty());
}
