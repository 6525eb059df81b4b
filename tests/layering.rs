//! The library's stages import each other only in the order packets flow
//! through them: capture → decode → conn → features → model → score →
//! respond → report → drivers, with the side stages placed where they are
//! fed (metrics and identity after conn, the evidence stage before
//! scoring). A stage may import any stage before it and never one after
//! it, so there are no cycles and a stage can be read, tested and replaced
//! knowing only what comes before it.
//!
//! This test walks every `crate::` path in `sensor/` (the binary's
//! `main.rs` excepted: it is the edge that wires everything) and fails on
//! a path that points downstream, and on a top-level module that has not
//! been given its place here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules of the library in data-flow order; modules of equal
/// rank may not import each other.
const ORDER: &[(&str, u32)] = &[
    // Leaves: what a packet is, and how a thread's failure is reported.
    ("packet", 0),
    ("fault", 0),
    ("capture", 1),
    ("decode", 2),
    ("conn", 3),
    // Side stages fed by the connection engine.
    ("metrics", 4),
    ("identity", 5),
    ("features", 6),
    ("model", 7),
    // The evidence stage of the decisions, which scoring feeds.
    ("evidence", 8),
    ("score", 9),
    ("respond", 10),
    ("report", 11),
    // The daemon's configuration file, which names every stage's section.
    ("config", 12),
    // replay, live, daemon, calibrate, featurize.
    ("drivers", 13),
];

fn rank(module: &str) -> Option<u32> {
    ORDER.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names through `crate::`, with the
/// line of each: plain paths (`crate::conn::X`) and the names inside
/// `crate::{...}` groups, nested groups included.
fn crate_refs(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                out.extend(group_heads(group, text, i));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push((name, i + 1));
                }
            }
        }
    }
    out
}

/// The first names of each path in a `{...}` group that starts on line
/// `line` (it may run over several lines).
fn group_heads(first: &str, text: &str, line: usize) -> Vec<(String, usize)> {
    let mut body = String::from(first);
    for l in text.lines().skip(line + 1) {
        if body.contains('}') && balanced(&body) {
            break;
        }
        body.push(' ');
        body.push_str(l.split("//").next().unwrap_or(""));
    }
    let mut heads = Vec::new();
    let mut depth = 0i32;
    let mut at_start = true;
    let mut word = String::new();
    for c in body.chars() {
        match c {
            '{' => {
                depth += 1;
                at_start = false;
            }
            '}' => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                if at_start && !word.is_empty() {
                    heads.push((std::mem::take(&mut word), line + 1));
                }
                word.clear();
                at_start = true;
            }
            c if at_start && (c.is_alphanumeric() || c == '_') => word.push(c),
            _ => {
                if at_start && !word.is_empty() {
                    heads.push((std::mem::take(&mut word), line + 1));
                    at_start = false;
                }
            }
        }
    }
    if at_start && !word.is_empty() {
        heads.push((word, line + 1));
    }
    heads
}

fn balanced(s: &str) -> bool {
    // The group opened before `s` started: it closes when `}` outnumber
    // `{` by one.
    s.matches('}').count() > s.matches('{').count()
}

#[test]
fn stages_import_only_upstream() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sensor");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut unplaced: BTreeMap<String, String> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut edges = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap_or(f);
        let first = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if first == "main" || first == "lib" {
            continue;
        }
        let Some(own) = rank(&first) else {
            unplaced.insert(first.clone(), rel.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (target, line) in crate_refs(&text) {
            if target == first {
                continue;
            }
            edges += 1;
            match rank(&target) {
                Some(r) if r < own => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: {first} imports {target}, which comes after it",
                    rel.display()
                )),
                None => {
                    unplaced.insert(target.clone(), rel.display().to_string());
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules with no place in tests/layering.rs ORDER: {unplaced:?}"
    );
    assert!(
        edges > 100,
        "only {edges} cross-stage imports found: the walk is broken"
    );
    assert!(
        wrong.is_empty(),
        "{} import(s) against the data flow:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

#[test]
fn the_walk_sees_paths_and_groups() {
    let text = "use crate::conn::X;\nuse crate::{decode::{a, b}, model,\n  score::Y};\n\
                let x = crate::report::f(); // crate::drivers\nfoo_crate::respond::x();";
    let names: Vec<String> = crate_refs(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["conn", "decode", "model", "score", "report"]);
}
