//! Fuzz target: the parsers of operator-written files, the daemon's
//! configuration (TOML and YAML, then its validation) and the response
//! rules (YAML and TOML, checked against the bundled models). A bad file
//! must be refused with an error naming the key, never a panic: the
//! configuration is read again on every SIGHUP, where a panic would take
//! the running sensor down.
//!
//! Input: byte 0 picks the parser (0: config TOML, 1: config YAML,
//! 2: rules YAML, 3: rules TOML; bit 2: the bundled rules' load context
//! with an allowlist and a hook); the rest is the file, as UTF-8
//! (invalid sequences replaced).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use osprey::config::Config;
use osprey::respond::rules::{LoadContext, ModelFacts, RuleSet};

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match sel & 3 {
        0 | 1 => {
            let path = Path::new("fuzz.conf");
            let parsed = if sel & 3 == 0 {
                Config::parse_toml(&text, path)
            } else {
                Config::parse_yaml(&text, path)
            };
            if let Ok(cfg) = parsed {
                if cfg.validate(path).is_ok() {
                    // What the daemon derives from a valid file.
                    let _ = cfg.engine_config();
                    let _ = cfg.respond.allowlist_nets();
                    let _ = cfg.live_context();
                    let _ = cfg.interim();
                }
            }
        }
        _ => {
            let models = ModelFacts::bundled().expect("the bundled models load");
            let cx = if sel & 4 != 0 {
                LoadContext {
                    allowlist: vec!["10.0.0.0/8".parse().expect("a CIDR")],
                    hooks: vec!["soar".into()],
                    skip_rules_for_absent_models: true,
                    max_targets_per_source: 0,
                }
            } else {
                LoadContext::default()
            };
            if let Ok(set) = RuleSet::parse(&text, sel & 3 == 2, &models, &cx) {
                let _ = set.evidence_windows();
                let _ = set.unused_classes(&models);
                for r in &set.rules {
                    let _ = osprey::respond::rules::summary(r);
                }
            }
        }
    }
});
