#!/usr/bin/env python3
"""Figures of models on data they were not trained on, measured through
`osprey replay` (Rust inference, the sensor's own decisions):

- lab sets (make-pcaps.sh output): per attack type, the share of its flows
  flagged by any model (recall), and the share of benign flows flagged
  (false-positive rate), per set;
- real-world captures (benign as far as is known): the share of
  connections flagged, overall and per source folder.

    evaluate.py [--osprey target/release/osprey] [--models models] \\
        [--lab DIR]... [--realworld DIR]... [--json OUT]

A flow is flagged when any record of it (interim or final) is flagged by
any model, as tests/detection.rs counts it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import osprey_features as of  # noqa: E402
from labels import attackers, label, windows  # noqa: E402
from realworld import EXTENSIONS  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def replay(osprey, specs, pcap, out):
    """(conn.log rows, {uid: {model: flagged}}) or an error string."""
    cmd = [str(osprey), "replay", "-q", "--no-rules", "--log-dir", str(out)]
    for s in specs:
        cmd += ["--model", str(s)]
    done = subprocess.run(cmd + [str(pcap)], capture_output=True, text=True)
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
    rows = of.read_conn_log(out / "conn.log")
    flagged = {}
    alerts = out / "alerts.log"
    if alerts.exists():
        for line in alerts.read_text().splitlines():
            a = json.loads(line)
            mine = flagged.setdefault(a["uid"], {})
            for v in a["osprey"]["verdicts"]:
                mine[v["model"]] = mine.get(v["model"], False) or bool(v["flagged"])
    return rows, flagged


def any_flag(flagged, uid, model=None):
    f = flagged.get(uid, {})
    return f.get(model, False) if model else any(f.values())


def evaluate_lab(osprey, specs, lab, models, tmp):
    bad, wins = attackers(lab), windows(lab)
    tally = {}  # truth -> {"flows", "either", model...}
    for pcap in sorted(lab.glob("*.pcap")):
        rows, flagged = replay(osprey, specs, pcap, tmp / lab.name / pcap.stem)
        if rows is None:
            sys.exit(f"{pcap}: {flagged}")
        seen = set()
        for r in rows:
            if r["uid"] in seen:
                continue
            seen.add(r["uid"])
            t = tally.setdefault(label(r, pcap.name, bad, wins),
                                 {"flows": 0, "either": 0, **{m: 0 for m in models}})
            t["flows"] += 1
            t["either"] += any_flag(flagged, r["uid"])
            for m in models:
                t[m] += any_flag(flagged, r["uid"], m)
    return tally


def evaluate_realworld(osprey, specs, root, models, tmp):
    pcaps = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)

    def one(i_p):
        i, p = i_p
        return p, replay(osprey, specs, p, tmp / "rw" / str(i))

    per_dir, unreadable = {}, []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        for p, (rows, flagged) in ex.map(one, enumerate(pcaps)):
            if rows is None:
                unreadable.append((str(p.relative_to(root)), flagged))
                continue
            key = p.relative_to(root).parts[0]
            t = per_dir.setdefault(key, {"captures": 0, "flows": 0, "either": 0,
                                         **{m: 0 for m in models}, "flagged_captures": 0})
            uids = {r["uid"] for r in rows}
            t["captures"] += 1
            t["flows"] += len(uids)
            n = sum(any_flag(flagged, u) for u in uids)
            t["either"] += n
            t["flagged_captures"] += n > 0
            for m in models:
                t[m] += sum(any_flag(flagged, u, m) for u in uids)
    return per_dir, unreadable


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--osprey", type=Path, default=REPO / "target" / "release" / "osprey")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--lab", type=Path, action="append", default=[])
    ap.add_argument("--realworld", type=Path, action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    specs = [args.models / "osprey-classifier.toml", args.models / "osprey-anomaly.toml"]
    models = ["osprey-classifier", "osprey-anomaly"]
    out = {"lab": {}, "realworld": {}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for lab in args.lab:
            tally = evaluate_lab(args.osprey, specs, lab, models, tmp)
            out["lab"][lab.name] = tally
            print(f"\n{lab.name}: recall (either / classifier / anomaly), benign FPR")
            for truth, c in sorted(tally.items()):
                r = [c[k] / c["flows"] for k in ("either", *models)]
                word = "FPR   " if truth == "benign" else "recall"
                print(f"  {truth:16s} {c['flows']:7d} flows  {word} "
                      f"{r[0]:.4f} / {r[1]:.4f} / {r[2]:.4f}")
        for root in args.realworld:
            per_dir, unreadable = evaluate_realworld(args.osprey, specs, root, models, tmp)
            out["realworld"][str(root.name)] = {"per_source": per_dir,
                                                "unreadable": unreadable}
            flows = sum(c["flows"] for c in per_dir.values())
            print(f"\nreal-world {root.name}: {len(unreadable)} captures unreadable")
            for k, c in sorted(per_dir.items()):
                if len(per_dir) > 10 and c["either"] == 0:
                    continue
                print(f"  {k:18s} {c['captures']:5d} captures {c['flows']:7d} flows  flagged "
                      f"{c['either'] / max(1, c['flows']):.4f} (classifier "
                      f"{c[models[0]] / max(1, c['flows']):.4f}, anomaly "
                      f"{c[models[1]] / max(1, c['flows']):.4f})")
            tot = {k: sum(c[k] for c in per_dir.values()) for k in ("either", *models)}
            print(f"  {'total':18s} {flows:7d} flows  flagged {tot['either'] / max(1, flows):.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
