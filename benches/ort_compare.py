#!/usr/bin/env python3
"""osprey (tract + osprey's tree ops) against onnxruntime, same models, same
rows, same batch sizes, in one run.

    python benches/ort_compare.py [--models DIR] [--skip-rust]

Needs numpy, onnxruntime, and (to write the bench models when DIR has none)
scikit-learn and skl2onnx. It

  1. writes the scikit-learn bench models with tests/models/make_models.py
     --bench DIR (default target/bench-models) unless DIR has them, and one
     input_<columns>.json of seeded standard-normal rows per bundled model
     (models/osprey-*.toml) whose width is not 20;
  2. runs `cargo bench --bench inference` with OSPREY_INFERENCE_JSON=1, which
     times osprey's Model::run and prints JSON lines;
  3. times onnxruntime's InferenceSession.run on the same ONNX files and rows,
     once with one intra-op thread and once with its default thread count;
  4. prints microseconds per row and the ratios.

The ratio that matters is against onnxruntime on one thread: osprey's
Model::run is single-threaded and the sensor runs one scoring worker per
core, so a multi-threaded session would be competing with the sensor's own
workers. The default-thread column is there for reference.

Timing on both sides: warm up for 0.2 s, then seven rounds of about 20 ms,
and report the median round's time per row.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHES = [1, 64, 256, 1024]


def bundled_specs():
    d = os.path.join(ROOT, "models")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.startswith("osprey-") and f.endswith(".toml"))


def load_rows(path):
    with open(path) as f:
        rows = json.load(f)["rows"]
    return np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float32)


def prepare(models_dir):
    if not os.path.exists(os.path.join(models_dir, "input.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/models/make_models.py"),
                        "--bench", models_dir], check=True)
    rng = np.random.default_rng(7)
    for spec in bundled_specs():
        with open(spec, "rb") as f:
            cols = len(tomllib.load(f)["feature"])
        path = os.path.join(models_dir, f"input_{cols}.json")
        if cols != 20 and not os.path.exists(path):
            x = rng.standard_normal((1024, cols)).astype(np.float32)
            with open(path, "w") as f:
                json.dump({"columns": cols, "rows": x.tolist()}, f)


def rust_times(models_dir):
    env = dict(os.environ, OSPREY_INFERENCE_JSON="1", OSPREY_BENCH_MODELS=models_dir,
               OSPREY_PYTHON=sys.executable)
    out = subprocess.run(["cargo", "bench", "--bench", "inference"], cwd=ROOT, env=env,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    times = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            times[(r["model"], r["batch"])] = (r["us_per_row"], r["spec"])
    return times


def time_per_row(run, n):
    def once(k):
        t = time.perf_counter()
        for _ in range(k):
            run()
        return time.perf_counter() - t

    start, k = time.perf_counter(), 1
    while time.perf_counter() - start < 0.2:
        once(k)
        k = min(k * 2, 1 << 20)
    per = once(16) / 16
    k = max(1, int(0.02 / max(per, 1e-9)))
    rounds = sorted(once(k) / (k * n) * 1e6 for _ in range(7))
    return statistics.median(rounds)


def ort_times(spec_path, models_dir, threads):
    with open(spec_path, "rb") as f:
        spec = tomllib.load(f)
    onnx_path = os.path.join(os.path.dirname(spec_path), spec["model"]["onnx"])
    cols = len(spec["feature"])
    rows_path = os.path.join(models_dir, f"input_{cols}.json")
    if not os.path.exists(rows_path):
        rows_path = os.path.join(models_dir, "input.json")
    x = load_rows(rows_path)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    # The outputs osprey computes: those the spec names, but the label
    # (osprey checks it and takes the class from the probabilities).
    outputs = [o["name"] for o in spec.get("output", []) if o.get("meaning") != "label"] or None
    name = sess.get_inputs()[0].name
    times = {}
    for b in BATCHES:
        batch = np.ascontiguousarray(x[:b])
        times[b] = time_per_row(lambda: sess.run(outputs, {name: batch}), b)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=os.path.join(ROOT, "target", "bench-models"),
                        help="folder of the scikit-learn bench models")
    args = parser.parse_args()
    models_dir = os.path.abspath(args.models)
    prepare(models_dir)
    rust = rust_times(models_dir)
    names = sorted({m for m, _ in rust}, key=lambda m: list(dict.fromkeys(m for m, _ in rust)).index(m))
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs; microseconds per row "
          "(median of 7 rounds)")
    header = (f"{'model':<18} {'batch':>5} {'osprey':>9} {'ort 1 thr':>10} {'ort dflt':>9} "
              f"{'osprey/ort1':>12} {'osprey/dflt':>12}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for m in names:
        spec = rust[(m, BATCHES[0])][1]
        one = ort_times(spec, models_dir, 1)
        default = ort_times(spec, models_dir, 0)
        for b in BATCHES:
            us = rust[(m, b)][0]
            r1, rd = us / one[b], us / default[b]
            if b == 256:
                worst = max(worst, r1)
            print(f"{m:<18} {b:>5} {us:>9.3f} {one[b]:>10.3f} {default[b]:>9.3f} "
                  f"{r1:>11.2f}x {rd:>11.2f}x")
    print(f"\nworst osprey/onnxruntime (1 thread) at batch 256: {worst:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    sys.exit(main())
