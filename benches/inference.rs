//! Model inference: time per row at batch sizes 1, 64, 256 and 1024, for
//! every bundled model (`models/osprey-*.toml`) and for larger scikit-learn
//! models exported by skl2onnx: a 100-tree RandomForest, 100-tree
//! GradientBoosting (binary and 3-class) and a 64x32 MLP.
//!
//! Run with `cargo bench --bench inference`. The scikit-learn models are
//! too big to commit; they are written by `tests/models/make_models.py
//! --bench DIR` into `$OSPREY_BENCH_MODELS` (default
//! `<crate>/target/bench-models`). When that folder is missing the bench
//! runs the script with `$OSPREY_PYTHON` (default `python3`, which needs
//! scikit-learn, skl2onnx and onnxruntime); when that fails it says so and
//! benches the bundled models alone.
//!
//! `OSPREY_INFERENCE_JSON=1` replaces criterion by a plain timing loop that
//! prints one JSON object per model and batch (`benches/ort_compare.py`
//! reads them to put onnxruntime's times beside osprey's). Both sides time
//! the same way: after a warm-up, seven rounds of about 20 ms each, and the
//! median round's time per row.
//!
//! Rows are the model's input as it is (already scaled): `input.json` from
//! the bench folder for 20-column models, `input_<columns>.json` there when
//! present (ort_compare.py writes one per bundled model), otherwise seeded
//! standard-normal values.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

use osprey::features::FeatureSpec;
use osprey::model::Model;

const BATCHES: [usize; 4] = [1, 64, 256, 1024];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bench_dir() -> PathBuf {
    std::env::var_os("OSPREY_BENCH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("target/bench-models"))
}

/// Writes the scikit-learn bench models when they are not there yet.
fn ensure_bench_models(dir: &Path) -> bool {
    if dir.join("input.json").exists() {
        return true;
    }
    let python = std::env::var("OSPREY_PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!(
        "inference bench: writing the scikit-learn bench models to {} with {python}",
        dir.display()
    );
    let status = std::process::Command::new(&python)
        .arg(crate_dir().join("tests/models/make_models.py"))
        .arg("--bench")
        .arg(dir)
        .status();
    match status {
        Ok(s) if s.success() => true,
        other => {
            eprintln!(
                "inference bench: skipped the scikit-learn models ({other:?}); set OSPREY_PYTHON \
                 to a Python with scikit-learn, skl2onnx and onnxruntime"
            );
            false
        }
    }
}

/// Every spec to bench, with a short name.
fn specs() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut bundled: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("models"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    bundled.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with("osprey-") && name.ends_with(".toml")
    });
    bundled.sort();
    if bundled.is_empty() {
        eprintln!("inference bench: no bundled model (models/osprey-*.toml) to bench");
    }
    for p in bundled {
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned());
        out.push((name.unwrap_or_default(), p));
    }
    let dir = bench_dir();
    if ensure_bench_models(&dir) {
        for name in ["rf100", "gb100_binary", "gb100_multiclass", "mlp"] {
            out.push((name.to_string(), dir.join(format!("{name}.toml"))));
        }
    }
    out
}

/// 1,024 rows of `cols` values (see the module doc for where they come from).
fn rows(cols: usize) -> Vec<f32> {
    let dir = bench_dir();
    let named = dir.join(format!("input_{cols}.json"));
    let file = if named.exists() {
        Some(named)
    } else if cols == 20 {
        Some(dir.join("input.json"))
    } else {
        None
    };
    if let Some(v) = file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        let values: Vec<f32> = v["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r.as_array().into_iter().flatten())
            .map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32))
            .collect();
        if values.len() == 1024 * cols {
            return values;
        }
    }
    // xorshift and Box-Muller: seeded, no extra dependency.
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..1024 * cols)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn load(path: &Path) -> Option<Model> {
    let spec = match FeatureSpec::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("inference bench: skipped {}: {e}", path.display());
            return None;
        }
    };
    match Model::load(spec) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("inference bench: skipped {}: {e}", path.display());
            None
        }
    }
}

fn bench_inference(c: &mut Criterion) {
    for (name, path) in specs() {
        let Some(model) = load(&path) else { continue };
        let cols = model.spec().columns();
        let x = rows(cols);
        let mut group = c.benchmark_group(format!("inference/{name}"));
        for batch in BATCHES {
            group.throughput(Throughput::Elements(batch as u64));
            let input = &x[..batch * cols];
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &n| {
                b.iter(|| black_box(model.run(black_box(input), n)));
            });
        }
        group.finish();
    }
}

/// Median time per row (µs) over seven ~20 ms rounds, after a warm-up.
fn time_per_row(model: &Model, input: &[f32], n: usize) -> f64 {
    let once = |k: usize| {
        let t = Instant::now();
        for _ in 0..k {
            black_box(model.run(black_box(input), n).ok());
        }
        t.elapsed()
    };
    let warm = Instant::now();
    let mut k = 1;
    while warm.elapsed() < Duration::from_millis(200) {
        once(k);
        k = (k * 2).min(1 << 20);
    }
    let per = once(16).as_secs_f64() / 16.0;
    let k = ((0.02 / per.max(1e-9)) as usize).max(1);
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| once(k).as_secs_f64() / (k * n) as f64 * 1e6)
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[3]
}

fn json_timing() {
    for (name, path) in specs() {
        let Some(model) = load(&path) else { continue };
        let cols = model.spec().columns();
        let x = rows(cols);
        for batch in BATCHES {
            let us = time_per_row(&model, &x[..batch * cols], batch);
            println!(
                "{{\"model\": {:?}, \"spec\": {:?}, \"batch\": {batch}, \"us_per_row\": {us:.4}}}",
                name,
                path.display().to_string()
            );
        }
    }
}

criterion_group!(benches, bench_inference);

fn main() {
    if std::env::var_os("OSPREY_INFERENCE_JSON").is_some() {
        json_timing();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
