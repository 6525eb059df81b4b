"""The lab's labelling rule (shared/lab/README.md): a flow is an attack iff
one endpoint is an attacker address; its type is the labels.csv window
holding its first packet, or the nearest one."""

import csv
import ipaddress


def attackers(lab):
    out = set()
    with open(lab / "hosts.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["role"] == "attacker":
                for col in ("ipv4", "ipv6", "ipv6_link_local"):
                    if r.get(col):
                        out.add(ipaddress.ip_address(r[col]))
    return out


def windows(lab):
    """pcap -> [(start, end, attack type)] of its attack windows."""
    out = {}
    with open(lab / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["label"] != "benign":
                out.setdefault(r["pcap"], []).append(
                    (float(r["start_epoch"]), float(r["end_epoch"]), r["label"]))
    return out


def label(row, pcap, bad, wins):
    if (ipaddress.ip_address(row["id.orig_h"]) not in bad
            and ipaddress.ip_address(row["id.resp_h"]) not in bad):
        return "benign"
    ws = wins.get(pcap, [])
    if not ws:
        raise SystemExit(f"{pcap}: a flow with the attacker but no attack window in labels.csv")
    ts = row["ts"]
    for s, e, t in ws:
        if s <= ts <= e:
            return t
    # The first packet can precede the tool's own start stamp by a hair.
    return min(ws, key=lambda w: min(abs(ts - w[0]), abs(ts - w[1])))[2]
