//! Model inference against onnxruntime's own answers (tests/models/cases.json,
//! written by tests/models/make_models.py), and `osprey check` refusing
//! models that do not match their spec.

use std::path::{Path, PathBuf};
use std::process::Command;

use osprey::features::spec::RawSpec;
use osprey::features::FeatureSpec;
use osprey::model::{Model, Verdict};
use serde_json::Value;
use tract_onnx::prelude::*;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(models_dir().join(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}

/// Input rows as (values, rows); `null` is a missing value.
fn input(name: &str) -> (Vec<f32>, usize) {
    let v = read_json(name);
    let rows = v["rows"].as_array().expect("rows");
    let mut out = Vec::new();
    for r in rows {
        for x in r.as_array().expect("row") {
            out.push(x.as_f64().map_or(f32::NAN, |x| x as f32));
        }
    }
    (out, rows.len())
}

const COLUMNS: usize = 20;

/// Every output of the raw ONNX graph, by name, run through osprey's op
/// register.
fn run_raw(model: &Path, x: &[f32], n: usize) -> Vec<(String, Tensor)> {
    let mut m = osprey::model::onnx().model_for_path(model).expect("load");
    let sym = m.sym("N");
    m.set_input_fact(0, f32::fact([sym.to_dim(), COLUMNS.to_dim()]).into())
        .expect("input fact");
    let typed = m.into_optimized().expect("optimize");
    let names: Vec<String> = typed
        .output_outlets()
        .expect("outputs")
        .iter()
        .map(|o| typed.outlet_label(*o).expect("output label").to_string())
        .collect();
    let plan = typed.into_runnable().expect("plan");
    let input = Tensor::from_shape(&[n, COLUMNS], x).expect("tensor");
    let out = plan.run(tvec!(input.into_tvalue())).expect("run");
    names
        .into_iter()
        .zip(out.into_iter().map(|t| t.into_tensor()))
        .collect()
}

fn close(got: f32, want: f32) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

fn floats(expected: &Value) -> Vec<f32> {
    expected["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| match v {
            Value::String(s) if s == "inf" => f32::INFINITY,
            Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
            v => v.as_f64().map_or(f32::NAN, |x| x as f32),
        })
        .collect()
}

fn check_output(case: &str, name: &str, got: &Tensor, want: &Value, unwritten: &[usize]) {
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(got.shape(), &shape[..], "{case}: shape of {name}");
    // tract types integer results of shape-like ops (ArgMax) as TDim.
    let got = if got.datum_type() == DatumType::TDim {
        got.cast_to::<i64>().expect("TDim to i64").into_owned()
    } else {
        got.clone()
    };
    let view = got.try_as_plain_ram().expect("plain");
    match want["dtype"].as_str().expect("dtype") {
        "float32" => {
            let got = view.as_slice::<f32>().expect("f32 output");
            let want = floats(want);
            let width = shape.get(1).copied().unwrap_or(1);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if unwritten.contains(&(i % width)) {
                    continue;
                }
                assert!(
                    close(*g, *w),
                    "{case}: {name}[row {}, col {}] = {g}, onnxruntime says {w}",
                    i / width,
                    i % width
                );
            }
        }
        "int64" => {
            let got = view.as_slice::<i64>().expect("i64 output");
            let want: Vec<i64> = want["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_i64().expect("int"))
                .collect();
            assert_eq!(got, &want[..], "{case}: {name}");
        }
        "string" => {
            let got = view.as_slice::<String>().expect("string output");
            let want: Vec<String> = want["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_str().expect("str").to_string())
                .collect();
            assert_eq!(got, &want[..], "{case}: {name}");
        }
        other => panic!("{case}: unknown dtype {other}"),
    }
}

#[test]
fn every_case_matches_onnxruntime() {
    let cases = read_json("cases.json");
    let cases = cases["cases"].as_array().expect("cases");
    assert!(cases.len() > 90, "cases.json lists {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let (x, n) = input(case["input"].as_str().expect("input"));
        let model = models_dir().join(case["model"].as_str().expect("model"));
        let unwritten: Vec<usize> = case["unwritten"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_u64().expect("col") as usize)
                    .collect()
            })
            .unwrap_or_default();
        let got = run_raw(&model, &x, n);
        let want = case["outputs"].as_object().expect("outputs");
        assert_eq!(got.len(), want.len(), "{name}: output count");
        for (out_name, tensor) in &got {
            let expected = want
                .get(out_name)
                .unwrap_or_else(|| panic!("{name}: unexpected output {out_name}"));
            check_output(name, out_name, tensor, expected, &unwritten);
        }
    }
}

/// The same cases through `Model`: the verdict's class, probability and
/// score are onnxruntime's.
#[test]
fn verdicts_carry_onnxruntime_outputs() {
    let cases = read_json("cases.json");
    let mut checked = 0;
    for case in cases["cases"].as_array().expect("cases") {
        let Some(spec_file) = case["spec"].as_str() else {
            continue;
        };
        let name = case["name"].as_str().expect("name");
        let spec = FeatureSpec::load(&models_dir().join(spec_file)).expect("spec");
        let model = Model::load(spec.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (x, n) = input(case["input"].as_str().expect("input"));
        let verdicts = model.run(&x, n).expect("run");
        assert_eq!(verdicts.len(), n);
        let outputs = &case["outputs"];
        if let Some(p) = outputs.get("probabilities") {
            let probs = floats(p);
            let classes = probs.len() / n;
            let names = spec
                .outputs
                .iter()
                .find_map(|o| o.classes.clone())
                .expect("classes");
            let benign = names
                .iter()
                .position(|c| *c == spec.alert.benign_class)
                .expect("the benign class");
            for (r, v) in verdicts.iter().enumerate() {
                let row = &probs[r * classes..(r + 1) * classes];
                // Flagged when the attack classes together reach
                // min_probability; the label is then the likeliest attack
                // class, else the likeliest class.
                let attack = 1.0 - row[benign];
                let flagged = f64::from(attack) >= spec.alert.min_probability;
                let best = row
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| !flagged || *k != benign)
                    .map(|(_, p)| *p)
                    .fold(f32::NEG_INFINITY, f32::max);
                let k = v.class.expect("class");
                assert!(
                    close(row[k], best),
                    "{name} row {r}: class {k} is not the top"
                );
                assert!(close(v.probability.expect("p"), best), "{name} row {r}");
                assert_eq!(v.label.as_deref(), Some(names[k].as_str()));
                assert!(
                    close(v.score.expect("attack probability"), attack),
                    "{name} row {r}"
                );
                assert_eq!(v.flagged, flagged, "{name} row {r}");
            }
        }
        if let Some(s) = outputs.get("score").or_else(|| outputs.get("variable")) {
            let scores = floats(s);
            let threshold = spec
                .outputs
                .iter()
                .find_map(|o| o.threshold)
                .expect("threshold");
            for (v, want) in verdicts.iter().zip(&scores) {
                let got = v.score.expect("score");
                assert!(
                    close(got, *want),
                    "{name}: score {got}, onnxruntime says {want}"
                );
                assert_eq!(v.flagged, f64::from(got) >= threshold);
            }
        }
        checked += 1;
    }
    assert!(checked >= 13, "{checked} cases with a spec");
}

#[test]
fn a_model_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Model>();
    send_sync::<Verdict>();

    let spec = FeatureSpec::load(&models_dir().join("rf_classifier.toml")).expect("spec");
    let model = Model::load(spec).expect("model");
    let (x, n) = input("input.json");
    let alone = model.run(&x, n).expect("run");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| model.run(&x, n))).collect();
        for h in handles {
            assert_eq!(h.join().expect("thread").expect("run"), alone);
        }
    });
}

#[test]
fn run_refuses_rows_of_the_wrong_width() {
    let spec = FeatureSpec::load(&models_dir().join("gb_binary.toml")).expect("spec");
    let model = Model::load(spec).expect("model");
    let err = model.run(&[0.0; 21], 1).unwrap_err().to_string();
    assert!(
        err.contains("21 values are not 1 rows of 20 columns"),
        "{err}"
    );
    assert!(model.run(&[], 0).expect("empty").is_empty());
}

#[test]
fn describe_lists_every_column_with_its_scaler() {
    let spec = FeatureSpec::load(&models_dir().join("rf_classifier.toml")).expect("spec");
    let model = Model::load(spec).expect("model");
    let text = model.describe();
    assert!(
        text.contains("input    float_input: float32 [N, 20]"),
        "{text}"
    );
    assert!(text.contains("probabilities of 0, 1, 2"), "{text}");
    assert!(text.contains(" 19  "), "{text}");
    assert!(text.contains("duration"), "{text}");
    assert!(text.contains("0.006326"), "{text}");
}

// ---------------------------------------------------------------- osprey check

/// Writes a variant of a good fixture spec into `dir`, pointing at the
/// fixture's ONNX file, after `edit`.
fn bad_spec(dir: &Path, fixture: &str, edit: impl FnOnce(&mut RawSpec)) -> PathBuf {
    let text = std::fs::read_to_string(models_dir().join(fixture)).expect("fixture spec");
    let mut raw: RawSpec = toml::from_str(&text).expect("fixture parses");
    raw.model.onnx = models_dir().join(&raw.model.onnx);
    edit(&mut raw);
    let path = dir.join(fixture);
    std::fs::write(&path, toml::to_string(&raw).expect("serialize")).expect("write");
    path
}

fn check(spec: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["check", "--model"])
        .arg(spec)
        .output()
        .expect("run osprey");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn refused(spec: &Path, needle: &str) {
    let (ok, text) = check(spec);
    assert!(!ok, "osprey check accepted {}:\n{text}", spec.display());
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

#[test]
fn check_accepts_and_describes_good_models() {
    for spec in [
        "rf_classifier.toml",
        "gb_binary.toml",
        "mlp_classifier.toml",
        "autoencoder.toml",
    ] {
        let (ok, text) = check(&models_dir().join(spec));
        assert!(ok, "{spec}:\n{text}");
        assert!(text.contains("column"), "{spec}:\n{text}");
    }
}

#[test]
fn check_refuses_a_spec_with_more_columns_than_the_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "rf_classifier.toml", |raw| {
        let mut extra = raw.features[0].clone();
        extra.name = "duration_again".into();
        raw.features.push(extra);
        if let Some(s) = &mut raw.scaler {
            s.center.push(0.0);
            s.scale.push(1.0);
        }
    });
    refused(
        &spec,
        "input \"float_input\" has 20 columns, the spec lists 21 features",
    );
}

#[test]
fn check_refuses_a_spec_with_fewer_columns_than_the_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "mlp_classifier.toml", |raw| {
        raw.features.pop();
        if let Some(s) = &mut raw.scaler {
            s.center.pop();
            s.scale.pop();
        }
    });
    refused(&spec, "has 20 columns, the spec lists 19 features");
}

#[test]
fn check_refuses_a_wrong_input_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "gb_binary.toml", |raw| {
        raw.input.name = "input".into()
    });
    refused(
        &spec,
        "the model's input is named \"float_input\", the spec's [input] name is \"input\"",
    );
}

#[test]
fn check_refuses_a_wrong_input_dtype() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "rf_classifier.toml", |raw| {
        raw.input.dtype = osprey::features::spec::Dtype::Int64;
    });
    refused(
        &spec,
        "input \"float_input\" is float32, the spec's [input] dtype is int64",
    );
}

#[test]
fn check_refuses_a_class_list_of_the_wrong_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "rf_classifier.toml", |raw| {
        for o in &mut raw.outputs {
            if let Some(c) = &mut o.classes {
                c.push("3".into());
            }
        }
    });
    refused(
        &spec,
        "output \"probabilities\" gives 3 class probabilities, the spec names 4 classes",
    );
}

#[test]
fn check_refuses_a_missing_scaler_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "rf_classifier.toml", |raw| {
        if let Some(s) = &mut raw.scaler {
            s.scale.pop();
        }
    });
    refused(
        &spec,
        "scaler.scale has 19 values, the spec lists 20 features (the first without a value is \"state_REJ\")",
    );
}

#[test]
fn check_refuses_an_output_the_model_lacks_or_types_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "autoencoder.toml", |raw| {
        raw.outputs[0].name = "reconstruction_error".into();
    });
    refused(
        &spec,
        "the spec's output \"reconstruction_error\" is not an output of the model (its outputs: score)",
    );
    let spec = bad_spec(dir.path(), "rf_classifier.toml", |raw| {
        raw.outputs[0].dtype = osprey::features::spec::Dtype::Float32;
    });
    refused(
        &spec,
        "output \"label\" is int64, the spec says dtype = float32",
    );
}

#[test]
fn check_names_an_unreadable_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = bad_spec(dir.path(), "gb_binary.toml", |raw| {
        raw.model.onnx = "missing.onnx".into();
    });
    refused(&spec, "missing.onnx");
}
