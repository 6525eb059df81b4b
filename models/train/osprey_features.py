"""The feature spec (models/README.md) computed in Python from Zeek conn.log
files: what the training code fits the models on.

osprey computes the same columns in Rust in production (sensor/features/).
Two implementations of one contract is deliberate: the parity test
(tests/features_parity.rs) feeds the same conn.log rows through both and
requires equal values to 1e-6, so a model sees in production exactly the
numbers it was trained on, and a drift in either side fails CI.

Only the standard library and numpy: the module also serves users who train
their own models from their own Zeek logs.
"""

import json
import math
import tomllib
from collections import defaultdict

import numpy as np

NUM_FIELDS = {
    "duration": "duration",
    "orig_bytes": "orig_bytes",
    "resp_bytes": "resp_bytes",
    "missed_bytes": "missed_bytes",
    "orig_pkts": "orig_pkts",
    "orig_ip_bytes": "orig_ip_bytes",
    "resp_pkts": "resp_pkts",
    "resp_ip_bytes": "resp_ip_bytes",
    "orig_p": "id.orig_p",
    "resp_p": "id.resp_p",
    "ip_proto": "ip_proto",
    "local_orig": "local_orig",
    "local_resp": "local_resp",
}
CAT_FIELDS = {"proto", "conn_state", "service"}
TIME_FIELDS = {"ts", "duration"}
BOOL_FIELDS = {"local_orig", "local_resp"}


class ConnLogError(ValueError):
    pass


# ------------------------------------------------------------------ conn.log
def _value(name, text, unset, empty, set_sep, where):
    """One TSV field as Python value (None when unset), as Zeek defines it."""
    if name == "service":
        if text in (unset, empty, ""):
            return []
        return text.split(set_sep)
    if text == unset:
        return None
    if name in NUM_FIELDS.values() or name == "ts":
        if name in BOOL_FIELDS:
            if text not in ("T", "F"):
                raise ConnLogError(f"{where}: {name} must be T or F, not {text!r}")
            return 1.0 if text == "T" else 0.0
        try:
            v = float(text)
        except ValueError:
            raise ConnLogError(f"{where}: {name} is not a number: {text!r}") from None
        if not math.isfinite(v):
            raise ConnLogError(f"{where}: {name} is not finite: {text!r}")
        return v
    return text


def read_conn_log(path):
    """Rows of a Zeek conn.log (TSV with its header, or JSON lines) as dicts
    keyed by Zeek's column names."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    first = text.lstrip()[:1]
    if first == "{":
        return _read_json(path, text)
    return _read_tsv(path, text)


def _read_tsv(path, text):
    sep, set_sep, empty, unset = "\t", ",", "(empty)", "-"
    fields = None
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#separator"):
                raw = line.split(" ", 1)[1].strip()
                sep = raw.encode().decode("unicode_escape") if raw.startswith("\\x") else raw
            else:
                key, _, val = line.partition(sep)
                key = key[1:]
                if key == "set_separator":
                    set_sep = val
                elif key == "empty_field":
                    empty = val
                elif key == "unset_field":
                    unset = val
                elif key == "fields":
                    fields = val.split(sep)
            continue
        if fields is None:
            raise ConnLogError(f"{path}:{n}: a data line before the #fields header")
        vals = line.split(sep)
        if len(vals) != len(fields):
            raise ConnLogError(
                f"{path}:{n}: {len(vals)} fields, the header names {len(fields)}")
        row = {}
        for name, v in zip(fields, vals):
            row[name] = _value(name, v, unset, empty, set_sep, f"{path}:{n}: column {name}")
        rows.append(row)
    return rows


def _read_json(path, text):
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConnLogError(f"{path}:{n}: not JSON: {e}") from None
        row = {}
        for k, v in obj.items():
            if k == "service":
                row[k] = list(v.split(",")) if isinstance(v, str) else list(v or [])
            elif k in BOOL_FIELDS:
                row[k] = None if v is None else (1.0 if v else 0.0)
            elif k == "ts" and isinstance(v, str):
                raise ConnLogError(f"{path}:{n}: ISO 8601 ts is not supported here")
            else:
                row[k] = v
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the spec
def load_spec(path):
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _transform(kind, x):
    if kind == "log1p":
        return math.copysign(math.log1p(abs(x)), x)
    return x


def _num(row, field):
    v = row.get(NUM_FIELDS[field])
    return None if v is None else float(v)


def _cat_is(row, field, value):
    if field == "service":
        svc = row.get("service") or []
        return (not svc) if value == "" else value in svc
    return row.get(field) == value


def _column(feature, row):
    kind = feature["kind"]
    if kind == "field":
        return _num(row, feature["field"])
    if kind == "ratio":
        n = _num(row, feature["num"])
        if n is None:
            return None
        d = _num(row, feature["den"])
        if d is None or d == 0.0:
            return float(feature.get("den_zero", 0.0))
        return n / d
    if kind == "rate":
        v = _num(row, feature["field"])
        if v is None:
            return None
        d = _num(row, "duration") or 0.0
        return v / max(d, float(feature.get("min_duration", 1e-3)))
    if kind == "one_hot":
        return 1.0 if _cat_is(row, feature["field"], feature["equals"]) else 0.0
    if kind == "history":
        return 1.0 if feature["letter"] in (row.get("history") or "") else 0.0
    raise ValueError(f"feature {feature['name']}: unknown kind {kind!r}")


def _int_value(field, row):
    """Integer form of a numeric field, for exact running sums (durations in
    microseconds, their resolution in conn.log)."""
    v = _num(row, field)
    if v is None:
        return 0
    if field == "duration":
        return int(math.floor(v * 1e6 + 0.5))
    return int(v)


# The key whose windows a context key reads: resp_h_as_orig looks up the
# flows grouped by originator with the row's responder.
_MEMBERS = {"resp_h_as_orig": "orig_h"}


def _context_key(key, row):
    if key == "orig_h":
        return (row["id.orig_h"],)
    if key in ("resp_h", "resp_h_as_orig"):
        return (row["id.resp_h"],)
    if key == "orig_h_resp_p":
        return (row["id.orig_h"], int(row["id.resp_p"]), row["proto"])
    raise ValueError(f"unknown context key {key!r}")


def _context_value(stat, feature, window, n):
    if stat == "conns":
        return float(n)
    if stat in ("distinct_resp_p", "distinct_resp_h", "distinct_orig_h", "distinct_orig_p"):
        return float(len(window[stat]))
    total = window["sums"][feature["name"]]
    if stat == "share_state":
        return total / max(n, 1)
    if stat == "mean":
        v = total / 1e6 if feature["field"] == "duration" else float(total)
        return v / max(n, 1)
    raise ValueError(f"unknown context stat {stat!r}")


def _context_columns(spec, rows):
    """Host context of every row: the rows with the same key whose ts lies
    in [ts - window, ts + ahead], the row itself included (for the keys it
    is a member of)."""
    defaults = spec.get("context", {})
    default_window = float(defaults.get("window_secs", 60.0))
    default_ahead = float(defaults.get("ahead_secs", 0.0))
    out = {}
    groups = defaultdict(list)
    for c, f in enumerate(spec["feature"]):
        if f["kind"] == "context":
            groups[(f["key"], float(f.get("window_secs", default_window)),
                    float(f.get("ahead_secs", default_ahead)))].append((c, f))
    for (key, win, ahead), cols in groups.items():
        members, queries = defaultdict(list), defaultdict(list)
        for i, r in enumerate(rows):
            members[_context_key(_MEMBERS.get(key, key), r)].append(i)
            queries[_context_key(key, r)].append(i)
        for k, asking in queries.items():
            idx = members.get(k, [])
            idx.sort(key=lambda i: rows[i]["ts"])
            asking.sort(key=lambda i: rows[i]["ts"])
            multi = {s: defaultdict(int) for s in
                     ("distinct_resp_p", "distinct_resp_h", "distinct_orig_h", "distinct_orig_p")}
            sums = {f["name"]: 0 for _, f in cols}
            state = {**multi, "sums": sums}

            def contrib(f, r):
                if f["stat"] == "share_state":
                    return 1 if r["conn_state"] in f["states"] else 0
                if f["stat"] == "mean":
                    return _int_value(f["field"], r)
                return 0

            def items(r):
                return (("distinct_resp_p", (int(r["id.resp_p"]), r["proto"])),
                        ("distinct_orig_p", (int(r["id.orig_p"]), r["proto"])),
                        ("distinct_resp_h", r["id.resp_h"]),
                        ("distinct_orig_h", r["id.orig_h"]))

            lo = hi = n = 0
            for i in asking:
                ts = rows[i]["ts"]
                while hi < len(idx) and rows[idx[hi]]["ts"] <= ts + ahead:
                    r = rows[idx[hi]]
                    n += 1
                    for s, v in items(r):
                        state[s][v] += 1
                    for _, f in cols:
                        sums[f["name"]] += contrib(f, r)
                    hi += 1
                while lo < hi and rows[idx[lo]]["ts"] < ts - win:
                    r = rows[idx[lo]]
                    n -= 1
                    for s, v in items(r):
                        state[s][v] -= 1
                        if state[s][v] == 0:
                            del state[s][v]
                    for _, f in cols:
                        sums[f["name"]] -= contrib(f, r)
                    lo += 1
                for c, f in cols:
                    out[(i, c)] = _context_value(f["stat"], f, state, n)
    return out


def featurize(spec, rows, scaled=True):
    """The model input for `rows` (conn.log dicts): float64 matrix, one row
    per conn, columns in spec order; scaled when the spec has a scaler."""
    feats = spec["feature"]
    ctx = _context_columns(spec, rows) if any(f["kind"] == "context" for f in feats) else {}
    x = np.empty((len(rows), len(feats)), dtype=np.float64)
    for i, r in enumerate(rows):
        for c, f in enumerate(feats):
            raw = ctx.get((i, c)) if f["kind"] == "context" else _column(f, r)
            missing = float(f.get("missing", 0.0))
            t = f.get("transform", "none")
            v = _transform(t, missing if raw is None else raw)
            if not math.isfinite(v):
                v = _transform(t, missing)
            x[i, c] = v
    scaler = spec.get("scaler")
    if scaled and scaler:
        x = apply_scaler(scaler, x)
    return x


def apply_scaler(scaler, x):
    """(x - center) / scale in float64, as osprey does; the model's float32
    rounding happens afterwards, once (`as_model_input`)."""
    center = np.asarray(scaler["center"], dtype=np.float64)
    scale = np.asarray(scaler["scale"], dtype=np.float64)
    return (x - center) / scale


def as_model_input(x):
    return np.asarray(x, dtype=np.float32)


def main():
    """`python osprey_features.py --spec S [--raw] CONN_LOG`: the columns as
    CSV (uid, then every feature, shortest round-trip floats), for
    comparison with `osprey featurize` (tests/features_parity.rs)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--raw", action="store_true", help="before scaling")
    ap.add_argument("log")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    try:
        rows = read_conn_log(args.log)
    except ConnLogError as e:
        sys.exit(f"error: {e}")
    x = featurize(spec, rows, scaled=not args.raw)
    out = sys.stdout
    out.write("uid," + ",".join(f["name"] for f in spec["feature"]) + "\n")
    for r, v in zip(rows, x):
        out.write(r.get("uid", "") + "," + ",".join(repr(float(e)) for e in v) + "\n")


if __name__ == "__main__":
    main()
