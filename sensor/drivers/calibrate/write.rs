//! Writing what calibration decided: specs with their new threshold, the
//! rule file with its new evidence thresholds, and the output folder,
//! which receives files only when everything was computed and checked.
//!
//! A rule file is documentation as much as configuration (the bundled one
//! explains every rule), so its new thresholds are written into the text
//! itself, comments kept. Only when the file is laid out in a way that
//! edit cannot follow (flow style, TOML) is it written anew from its
//! parsed form, comments lost. Either way the caller checks that the
//! result loads as exactly the calibrated rule set before it is kept.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::CalibrateError;
use crate::features::spec::{Meaning, ModelKind, RawSpec};

/// A spec's new alert setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setting {
    /// The first `meaning = "score"` output's `threshold`.
    Threshold(f64),
    /// `alert.min_probability`.
    MinProbability(f64),
}

/// The spec `original` (read from `path`) with `setting`, naming its ONNX
/// file `onnx` (beside it), under a `header` comment.
pub fn spec_text(
    original: &str,
    path: &Path,
    onnx: &str,
    setting: Setting,
    header: &str,
) -> Result<String, CalibrateError> {
    let bad = |message: String| CalibrateError::Spec {
        path: path.to_path_buf(),
        message,
    };
    let mut raw: RawSpec = toml::from_str(original).map_err(|e| bad(e.to_string()))?;
    raw.model.onnx = PathBuf::from(onnx);
    match (raw.model.kind, setting) {
        (ModelKind::Anomaly, Setting::Threshold(t)) => {
            let out = raw
                .outputs
                .iter_mut()
                .find(|o| o.meaning == Meaning::Score)
                .ok_or_else(|| bad("no output with meaning = \"score\"".into()))?;
            out.threshold = Some(t);
        }
        (ModelKind::Classifier, Setting::MinProbability(p)) => raw.alert.min_probability = p,
        (kind, s) => return Err(bad(format!("{s:?} does not apply to a {kind:?} model"))),
    }
    let body = toml::to_string(&raw).map_err(|e| bad(e.to_string()))?;
    Ok(format!("{header}\n{body}"))
}

/// A rule threshold to write.
#[derive(Clone, Debug)]
pub struct Edit {
    pub rule: String,
    pub column: &'static str,
    pub old: u64,
    pub new: u64,
    /// Said in a comment beside the new value, where there is room.
    pub note: String,
}

/// How the rule file was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rewritten {
    /// The original text with the numbers changed: comments kept.
    InPlace,
    /// Written anew from its parsed form: comments lost.
    Reserialized,
}

/// The rule file with `edits` made and the rules named in `disable` set
/// to `enabled: false`, as YAML under `header`; `loads` says whether a
/// text is the calibrated rule set. Edits the text when it can, else
/// writes it anew.
pub fn rules_text(
    original: &str,
    yaml: bool,
    edits: &[Edit],
    disable: &[(String, String)],
    header: &str,
    loads: impl Fn(&str) -> bool,
) -> Result<(String, Rewritten), CalibrateError> {
    if yaml {
        if let Some(text) = edit_in_place(original, edits, disable) {
            let text = format!("{header}\n{text}");
            if loads(&text) {
                return Ok((text, Rewritten::InPlace));
            }
        }
    }
    let text = reserialize(original, yaml, edits, disable)
        .map(|t| format!("{header}\n{t}"))
        .map_err(CalibrateError::Rules)?;
    if loads(&text) {
        Ok((text, Rewritten::Reserialized))
    } else {
        Err(CalibrateError::Rules(
            "the rewritten rule file does not load as the calibrated rules".into(),
        ))
    }
}

/// The names of the rules a file lists, with whether each is enabled.
pub fn rule_names(text: &str, yaml: bool) -> Result<Vec<(String, bool)>, CalibrateError> {
    let doc = parse(text, yaml).map_err(CalibrateError::Rules)?;
    let rules = doc.get("rules").and_then(Value::as_sequence);
    Ok(rules
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let name = r.get("name")?.as_str()?.to_string();
            let enabled = r.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            Some((name, enabled))
        })
        .collect())
}

fn parse(text: &str, yaml: bool) -> Result<Value, String> {
    if yaml {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    } else {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// The file written anew from its parsed form.
fn reserialize(
    text: &str,
    yaml: bool,
    edits: &[Edit],
    disable: &[(String, String)],
) -> Result<String, String> {
    let mut doc = parse(text, yaml)?;
    let rules = doc
        .get_mut("rules")
        .and_then(Value::as_sequence_mut)
        .ok_or("the file has no list of rules")?;
    for rule in rules.iter_mut() {
        let Some(name) = rule.get("name").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        for e in edits.iter().filter(|e| e.rule == name) {
            let v = rule
                .get_mut("evidence")
                .and_then(|ev| ev.get_mut(e.column))
                .ok_or_else(|| format!("rule {name:?}: no evidence.{}", e.column))?;
            let slot = if v.is_mapping() {
                v.get_mut("min")
                    .ok_or_else(|| format!("rule {name:?}: evidence.{} has no min", e.column))?
            } else {
                v
            };
            *slot = Value::Number(e.new.into());
        }
        if disable.iter().any(|(n, _)| *n == name) {
            if let Some(m) = rule.as_mapping_mut() {
                m.insert(Value::String("enabled".into()), Value::Bool(false));
            }
        }
    }
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

/// One line of a YAML block: its indentation and its content without a
/// trailing comment.
struct Line<'a> {
    indent: usize,
    body: &'a str,
    commented: bool,
}

fn split(raw: &str) -> Line<'_> {
    let raw = raw.trim_end_matches(['\n', '\r']);
    let indent = raw.len() - raw.trim_start_matches(' ').len();
    let rest = &raw[indent..];
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut cut = rest.len();
    for (i, c) in rest.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => {
                cut = i;
                break;
            }
            None => {}
        }
        prev = c;
    }
    Line {
        indent,
        body: rest[..cut].trim_end(),
        commented: cut < rest.len(),
    }
}

/// A rule of the list: the lines it spans and the column of its keys.
struct Item {
    start: usize,
    end: usize,
    key_col: usize,
}

/// The items of the top-level `rules:` block list.
fn items(lines: &[String]) -> Option<Vec<Item>> {
    let top = lines.iter().position(|l| {
        let l = split(l);
        l.indent == 0 && l.body == "rules:"
    })?;
    // (first line, key column) of each item, and where the list ends.
    let mut starts: Vec<(usize, usize)> = Vec::new();
    let mut list_end = lines.len();
    let mut dash: Option<usize> = None;
    for (i, raw) in lines.iter().enumerate().skip(top + 1) {
        let l = split(raw);
        if l.body.is_empty() {
            continue;
        }
        let d = *dash.get_or_insert(l.indent);
        let is_item = l.indent == d && (l.body == "-" || l.body.starts_with("- "));
        if l.indent < d || (l.indent == d && !is_item) {
            list_end = i;
            break;
        }
        if !is_item {
            continue;
        }
        let after = &l.body[1..];
        let key_col = if after.trim().is_empty() {
            // `-` alone: the keys start on the next line.
            lines
                .iter()
                .skip(i + 1)
                .map(|x| split(x))
                .find(|x| !x.body.is_empty())
                .map_or(d + 2, |x| x.indent)
        } else {
            d + 1 + (after.len() - after.trim_start().len())
        };
        starts.push((i, key_col));
    }
    let ends = starts.iter().skip(1).map(|s| s.0).chain([list_end]);
    Some(
        starts
            .iter()
            .zip(ends)
            .map(|(&(start, key_col), end)| Item {
                start,
                end,
                key_col,
            })
            .collect(),
    )
}

/// The key and value of a line at column `col` (the item's first line
/// carries its dash).
fn key_at(raw: &str, col: usize) -> Option<(&str, &str)> {
    let l = split(raw);
    let text = if l.body.starts_with('-') && l.indent < col {
        l.body[1..].trim_start()
    } else if l.indent == col {
        l.body
    } else {
        return None;
    };
    let (k, v) = text.split_once(':')?;
    if !(v.is_empty() || v.starts_with(' ')) {
        return None;
    }
    Some((k.trim(), v.trim()))
}

fn unquote(s: &str) -> &str {
    s.trim_matches(|c| c == '"' || c == '\'')
}

/// The item whose `name` is `name`, and the line of its name.
fn find_item<'a>(lines: &[String], items: &'a [Item], name: &str) -> Option<(&'a Item, usize)> {
    let mut found = None;
    for it in items {
        for (i, line) in lines.iter().enumerate().take(it.end).skip(it.start) {
            if let Some(("name", v)) = key_at(line, it.key_col) {
                if unquote(v) == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some((it, i));
                }
            }
        }
    }
    found
}

/// Where `key` sits as a mapping key in `s` (not inside another word):
/// the byte just past its colon.
fn find_key(s: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = s[from..].find(key) {
        let at = from + p;
        let before = s[..at].chars().next_back();
        let after = &s[at + key.len()..];
        let rest = after.trim_start_matches(' ');
        if before.is_none_or(|c| c == ' ' || c == '{' || c == ',') && rest.starts_with(':') {
            return Some(s.len() - rest.len() + 1);
        }
        from = at + key.len();
    }
    None
}

/// The span of the number starting at `at` (after spaces).
fn number_at(s: &str, at: usize) -> Option<(usize, usize)> {
    let rest = s.get(at..)?;
    let start = at + (rest.len() - rest.trim_start_matches(' ').len());
    let digits = s[start..].chars().take_while(char::is_ascii_digit).count();
    (digits > 0).then_some((start, start + digits))
}

/// Replaces the number `old` at `span` of line `i` with `new`.
fn replace(lines: &mut [String], i: usize, span: (usize, usize), old: u64, new: u64) -> Option<()> {
    let line = lines.get_mut(i)?;
    if line.get(span.0..span.1)?.parse::<u64>().ok()? != old {
        return None;
    }
    line.replace_range(span.0..span.1, &new.to_string());
    Some(())
}

/// Makes one edit in the text's lines; `None` when the layout is not one
/// this follows.
fn edit_lines(lines: &mut [String], e: &Edit) -> Option<()> {
    let items = items(lines)?;
    let (it, _) = find_item(lines, &items, &e.rule)?;
    let ev = (it.start..it.end)
        .find(|&i| matches!(key_at(&lines[i], it.key_col), Some(("evidence", _))))?;
    let (_, inline) = key_at(&lines[ev], it.key_col)?;
    if !inline.is_empty() {
        // `evidence: { window_secs: 60, col: 20 }` on one line.
        if !inline.starts_with('{') || !inline.ends_with('}') {
            return None;
        }
        let l = split(&lines[ev]);
        let body_at = lines[ev].len() - lines[ev].trim_start_matches(' ').len();
        let map_at = body_at + l.body.find('{')?;
        let after = map_at + find_key(&lines[ev][map_at..], e.column)?;
        let span = match number_at(&lines[ev], after) {
            Some(s) => s,
            None => {
                let brace = after + lines[ev][after..].find('{')?;
                number_at(&lines[ev], brace + find_key(&lines[ev][brace..], "min")?)?
            }
        };
        return replace(lines, ev, span, e.old, e.new);
    }
    // A block: the lines below `evidence:` indented deeper than it.
    let ev_indent = split(&lines[ev]).indent.max(it.key_col);
    let mut i = ev + 1;
    while i < it.end {
        let l = split(&lines[i]);
        if l.body.is_empty() {
            i += 1;
            continue;
        }
        if l.indent <= ev_indent {
            return None;
        }
        if let Some((k, v)) = key_at(&lines[i], l.indent) {
            if k == e.column {
                let colon = l.indent + l.body.find(':')? + 1;
                if let Some(span) = number_at(&lines[i], colon) {
                    let simple = span.1 == l.indent + l.body.len() && !l.commented;
                    replace(lines, i, span, e.old, e.new)?;
                    if simple && !e.note.is_empty() {
                        lines[i].insert_str(
                            lines[i].trim_end_matches(['\n', '\r']).len(),
                            &format!("  # {}", e.note),
                        );
                    }
                    return Some(());
                }
                if v.starts_with('{') {
                    let brace = l.indent + l.body.find('{')?;
                    let span = number_at(&lines[i], brace + find_key(&lines[i][brace..], "min")?)?;
                    return replace(lines, i, span, e.old, e.new);
                }
                // `col:` with `min:` on a line below.
                let col_indent = l.indent;
                for j in i + 1..it.end {
                    let m = split(&lines[j]);
                    if m.body.is_empty() {
                        continue;
                    }
                    if m.indent <= col_indent {
                        return None;
                    }
                    if let Some(("min", _)) = key_at(&lines[j], m.indent) {
                        let span = number_at(&lines[j], m.indent + m.body.find(':')? + 1)?;
                        return replace(lines, j, span, e.old, e.new);
                    }
                }
                return None;
            }
        }
        i += 1;
    }
    None
}

/// Sets `enabled: false` on the rule `name`, with `why` beside it.
fn disable_lines(lines: &mut Vec<String>, name: &str, why: &str) -> Option<()> {
    let items = items(lines)?;
    let (it, name_line) = find_item(lines, &items, name)?;
    let existing =
        (it.start..it.end).find(|&i| matches!(key_at(&lines[i], it.key_col), Some(("enabled", _))));
    let line = format!("{}enabled: false  # {why}\n", " ".repeat(it.key_col));
    match existing {
        Some(i) if i != it.start => lines[i] = line,
        Some(_) => return None,
        None => lines.insert(name_line + 1, line),
    }
    Some(())
}

/// The original text with the edits made; `None` when its layout is not
/// one this follows.
fn edit_in_place(text: &str, edits: &[Edit], disable: &[(String, String)]) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        if let Some(l) = lines.last_mut() {
            l.push('\n');
        }
    }
    for e in edits {
        edit_lines(&mut lines, e)?;
    }
    for (name, why) in disable {
        disable_lines(&mut lines, name, why)?;
    }
    Some(lines.concat())
}

/// The folder the results are written to before they are published: the
/// output folder receives files only when every one of them was written
/// and checked.
pub struct Staging {
    dir: tempfile::TempDir,
    out: PathBuf,
    files: Vec<String>,
}

impl Staging {
    /// A hidden folder beside `out` (same file system: the files are
    /// renamed into place).
    pub fn new(out: &Path) -> Result<Staging, CalibrateError> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(CalibrateError::io(&parent))?;
        let dir = tempfile::Builder::new()
            .prefix(".osprey-calibrate-")
            .tempdir_in(&parent)
            .map_err(CalibrateError::io(&parent))?;
        Ok(Staging {
            dir,
            out: out.to_path_buf(),
            files: Vec::new(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name`; a name written twice is an error (two models would
    /// overwrite each other).
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<PathBuf, CalibrateError> {
        let p = self.claim(name)?;
        std::fs::write(&p, bytes).map_err(CalibrateError::io(&p))?;
        Ok(p)
    }

    pub fn copy(&mut self, name: &str, from: &Path) -> Result<PathBuf, CalibrateError> {
        let p = self.claim(name)?;
        std::fs::copy(from, &p).map_err(CalibrateError::io(from))?;
        Ok(p)
    }

    fn claim(&mut self, name: &str) -> Result<PathBuf, CalibrateError> {
        if self.files.iter().any(|f| f == name) {
            return Err(CalibrateError::Clash(name.to_string()));
        }
        self.files.push(name.to_string());
        Ok(self.path(name))
    }

    /// Moves every file into the output folder (created if need be),
    /// replacing files of the same names; the staging folder goes.
    pub fn publish(self) -> Result<Vec<PathBuf>, CalibrateError> {
        std::fs::create_dir_all(&self.out).map_err(CalibrateError::io(&self.out))?;
        let mut written = Vec::new();
        for f in &self.files {
            let dest = self.out.join(f);
            std::fs::rename(self.dir.path().join(f), &dest).map_err(CalibrateError::io(&dest))?;
            written.push(dest);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "\
# head comment
rules:
  # a scan
  - name: port-scan
    priority: 10
    evidence:
      window_secs: 300
      failed_targets: 20
    action:
      kind: block
      ttl_secs: 300

  - name: flagged-source   # trailing
    priority: 1000
    match:
      flagged: true
    evidence:
      window_secs: 300
      flagged: 10  # ten
      service_verified_flagged: { min: 3 }
    action:
      kind: alert
  -
    priority: 5
    name: \"quoted\"
    evidence: { window_secs: 60, flagged: 4 }
    action: { kind: alert }
";

    fn edit(rule: &str, column: &'static str, old: u64, new: u64) -> Edit {
        Edit {
            rule: rule.into(),
            column,
            old,
            new,
            note: format!("was {old}"),
        }
    }

    #[test]
    fn numbers_change_in_place_and_comments_stay() {
        let edits = [
            edit("port-scan", "failed_targets", 20, 31),
            edit("flagged-source", "flagged", 10, 12),
            edit("flagged-source", "service_verified_flagged", 3, 5),
            edit("quoted", "flagged", 4, 9),
        ];
        let out = edit_in_place(RULES, &edits, &[("port-scan".into(), "why".into())])
            .expect("the layout is followed");
        assert!(
            out.contains("      failed_targets: 31  # was 20\n"),
            "{out}"
        );
        assert!(out.contains("      flagged: 12  # ten\n"), "{out}");
        assert!(out.contains("      flagged: true\n"), "{out}");
        assert!(
            out.contains("service_verified_flagged: { min: 5 }"),
            "{out}"
        );
        assert!(
            out.contains("evidence: { window_secs: 60, flagged: 9 }"),
            "{out}"
        );
        assert!(
            out.contains("  - name: port-scan\n    enabled: false  # why\n"),
            "{out}"
        );
        assert!(out.starts_with("# head comment\n"));
        let before: Value = serde_yaml_ng::from_str(RULES).expect("yaml");
        let after: Value = serde_yaml_ng::from_str(&out).expect("yaml");
        assert_eq!(
            before
                .get("rules")
                .and_then(Value::as_sequence)
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(
            after["rules"][1]["evidence"]["service_verified_flagged"]["min"].as_u64(),
            Some(5)
        );
        assert_eq!(after["rules"][2]["evidence"]["flagged"].as_u64(), Some(9));
        assert_eq!(after["rules"][0]["enabled"].as_bool(), Some(false));
    }

    #[test]
    fn a_value_that_is_not_the_old_one_is_not_touched() {
        assert!(
            edit_in_place(RULES, &[edit("port-scan", "failed_targets", 21, 31)], &[]).is_none()
        );
        assert!(edit_in_place(RULES, &[edit("nobody", "flagged", 10, 12)], &[]).is_none());
    }

    #[test]
    fn reserializing_follows_any_layout() {
        let toml = "[[rules]]\nname = \"a\"\npriority = 1\n[rules.evidence]\nwindow_secs = 60\nfailed = { min = 4 }\n[rules.action]\nkind = \"alert\"\n";
        let out = reserialize(toml, false, &[edit("a", "failed", 4, 7)], &[]).expect("written");
        let v: Value = serde_yaml_ng::from_str(&out).expect("yaml");
        assert_eq!(v["rules"][0]["evidence"]["failed"]["min"].as_u64(), Some(7));
        assert_eq!(v["rules"][0]["name"].as_str(), Some("a"));
        let names = rule_names(toml, false).expect("names");
        assert_eq!(names, vec![("a".to_string(), true)]);
    }
}
