#!/usr/bin/env python3
"""Check a lab set's labels and print its per-pcap and per-label flow counts.

usage: checkset.py OUTDIR      (a set made by extra-pcaps.sh or the shared make-pcaps.sh)

Checks, each printed as OK or FAIL (exit status 1 on any FAIL):
  - every attack flow has an attacker address (hosts.csv) as one endpoint, and every
    flow with an attacker endpoint is an attack (the lab's label rule);
  - every attack flow starts inside one of its pcap's attack windows (labels.csv, from
    0.05 s before the start to 2.5 s after the end: the capture runs 2 s past a command)
    and carries that window's label;
  - a pcap with only benign windows holds no attack flow, and a pcap with only attack
    windows holds no benign flow (the clients are idle then, the attacker is idle in
    benign captures);
  - summary.csv's packet counts equal the pcaps' record counts.
"""
import collections
import csv
import ipaddress
import os
import struct
import sys


def addr(s):
    return ipaddress.ip_address(s)


def count_records(path):
    n = 0
    with open(path, "rb") as f:
        gh = f.read(24)
        endian = "<" if struct.unpack("<I", gh[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d) else ">"
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            incl = struct.unpack(endian + "I", h[8:12])[0]
            f.seek(incl, 1)
            n += 1


def main():
    out = sys.argv[1]
    attackers = set()
    with open(os.path.join(out, "hosts.csv")) as f:
        for r in csv.DictReader(f):
            if r["role"] == "attacker":
                for k in ("ipv4", "ipv6", "ipv6_link_local"):
                    if r.get(k):
                        attackers.add(addr(r[k]))
    wins = collections.defaultdict(list)
    with open(os.path.join(out, "labels.csv")) as f:
        for r in csv.DictReader(f):
            wins[r["pcap"]].append((float(r["start_epoch"]), float(r["end_epoch"]), r["label"]))
    per = collections.defaultdict(collections.Counter)
    fails = collections.Counter()
    examples = {}
    with open(os.path.join(out, "flows.csv")) as f:
        for r in csv.DictReader(f):
            p = r["pcap"]
            lab = r["attack_type"] if r["label"] == "attack" else "benign"
            per[p][lab] += 1
            has_att = addr(r["orig_h"]) in attackers or addr(r["resp_h"]) in attackers
            if has_att != (r["label"] == "attack"):
                fails["label rule"] += 1
                examples.setdefault("label rule", r)
            ws = wins.get(p, [])
            kinds = {w[2] == "benign" for w in ws}
            if r["label"] == "attack":
                ts = float(r["ts"])
                inside = [w for w in ws if w[2] != "benign" and w[0] - 0.05 <= ts <= w[1] + 2.5]
                if not inside:
                    fails["attack flow outside every attack window"] += 1
                    examples.setdefault("attack flow outside every attack window", r)
                elif r["attack_type"] not in {w[2] for w in inside}:
                    fails["attack type differs from its window"] += 1
                    examples.setdefault("attack type differs from its window", r)
                if kinds == {True}:
                    fails["attack flow in a benign-only pcap"] += 1
                    examples.setdefault("attack flow in a benign-only pcap", r)
            elif kinds == {False}:
                fails["benign flow in an attack-only pcap"] += 1
                examples.setdefault("benign flow in an attack-only pcap", r)
    summary = {}
    with open(os.path.join(out, "summary.csv")) as f:
        for r in csv.DictReader(f):
            summary[r["pcap"]] = r
    for p, r in summary.items():
        n = count_records(os.path.join(out, p))
        if n != int(r["packets"]):
            fails["summary packets differ from the pcap"] += 1
    checks = ["label rule", "attack flow outside every attack window",
              "attack type differs from its window", "attack flow in a benign-only pcap",
              "benign flow in an attack-only pcap", "summary packets differ from the pcap"]
    for c in checks:
        print(f"{'FAIL' if fails[c] else 'OK  '} {c}: {fails[c]}")
        if c in examples:
            e = examples[c]
            print(f"     e.g. {e['pcap']} {e['ts']} {e['orig_h']}:{e['orig_p']} -> {e['resp_h']}:{e['resp_p']} "
                  f"{e['proto']} {e['label']} {e['attack_type']}")
    print()
    print("| pcap | packets | bytes | flows | labels (flows) |")
    print("|---|---:|---:|---:|---|")
    tot = collections.Counter()
    tp = tb = 0
    for p in sorted(summary):
        s = summary[p]
        labs = ", ".join(f"{k} {v:,}" for k, v in sorted(per[p].items()))
        print(f"| {p[:-5]} | {int(s['packets']):,} | {int(s['bytes']):,} | {int(s['flows']):,} | {labs} |")
        tot.update(per[p])
        tp += int(s["packets"])
        tb += int(s["bytes"])
    print(f"| **total** | {tp:,} | {tb:,} | {sum(tot.values()):,} | |")
    print()
    print("| label | flows |")
    print("|---|---:|")
    for k, v in sorted(tot.items()):
        print(f"| {k} | {v:,} |")
    sys.exit(1 if sum(fails.values()) else 0)


if __name__ == "__main__":
    main()
