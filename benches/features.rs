//! Feature computation cost per conn record (the `featurize` of every
//! scored record): `Flow` from an engine record, then every column of the
//! bundled classifier's spec, host context included, scaled.
//!
//! Run with `cargo bench --bench features`. Input: the records of the lab's
//! mixed.pcap (`$OSPREY_SHARED/lab-pcaps`, default `<crate>/../shared`),
//! or of the bundled sample capture when the lab is absent.
//! `Throughput::Elements(records)`: criterion prints records/s; ns/record
//! is its inverse.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use osprey::conn::EngineConfig;
use osprey::drivers::replay::collect_records;
use osprey::features::{featurize, to_f32, FeatureSpec, Flow};

fn input() -> PathBuf {
    let shared = std::env::var_os("OSPREY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let mixed = shared.join("lab-pcaps/mixed.pcap");
    if mixed.is_file() {
        mixed
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/lab-mix-excerpt.pcap")
    }
}

fn bench(c: &mut Criterion) {
    let pcap = input();
    let records = collect_records(std::slice::from_ref(&pcap), None, EngineConfig::default())
        .expect("reading the capture");
    let spec = FeatureSpec::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osprey-classifier.toml"),
    )
    .expect("the bundled classifier spec");
    eprintln!(
        "features: {} records of {}, {} columns",
        records.len(),
        pcap.file_name().unwrap_or_default().to_string_lossy(),
        spec.columns()
    );
    let flows: Vec<Flow> = records.iter().map(Flow::from).collect();
    let mut g = c.benchmark_group("features");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("flow_from_record", |b| {
        b.iter(|| records.iter().map(Flow::from).collect::<Vec<_>>())
    });
    g.bench_function("featurize_scaled_f32", |b| {
        b.iter(|| to_f32(&featurize(&spec, black_box(&flows), true)))
    });
    g.bench_function("record_to_model_input", |b| {
        b.iter(|| {
            let flows: Vec<Flow> = black_box(&records).iter().map(Flow::from).collect();
            to_f32(&featurize(&spec, &flows, true))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
