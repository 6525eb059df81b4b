#!/usr/bin/env python3
"""End-to-end benchmark of `osprey run` (root needed; not part of the tests).

Creates two network namespaces joined by a veth pair (198.18.0.0/30), runs
the release osprey on one end and tcpreplay on the other, and reports:

  1. tcpreplay's own top speed on this veth with nothing capturing;
  2. whether osprey drops anything (kernel ring + interface + pipeline
     channels) at tcpreplay's top speed, and if it does, the highest rate
     (a bisection on `tcpreplay --pps`) at which it does not;
  3. the latency from an open connection's last packet to the verdict on
     its snapshot (p50/p99, from osprey_last_packet_to_verdict_seconds),
     and from a record leaving its conn worker to its verdict.

Usage: sudo python3 benches/live_rate.py [--pcap FILE] [--loops N] [--runs N]
[--pin] [--preload] [--fraction F] [--node] (default: ../shared/lab-pcaps/flood_syn.pcap,
small packets, 60 loops, 3 runs; --pin puts tcpreplay on CPU 1 and osprey on
CPU 0, --preload is tcpreplay -K). --node shapes osprey's end like a node: its
veth is a port of a bridge that holds the address, osprey captures on `any`,
and every packet is seen twice (the veth, then the bridge), so the node view
(conn/node_view.rs) judges each and drops the copies; compare its rates with a
run without --node for the node view's cost. OSPREY_BIN overrides the binary.
Build first: cargo build --release.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OSPREY = os.environ.get("OSPREY_BIN", os.path.join(ROOT, "target", "release", "osprey"))
NS_A, NS_B, IF_A, IF_B = "osprey-bench-a", "osprey-bench-b", "ospbencha", "ospbenchb"
PORT = 9750


def sh(*cmd, check=True, capture=True):
    r = subprocess.run(cmd, capture_output=capture, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr}")
    return r.stdout if capture else ""


NODE = False


def setup():
    teardown()
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "sh", "-c",
           "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", NS_A, "link", "add", IF_A, "type", "veth", "peer", "name", IF_B,
       "netns", NS_B)
    for ns, ifc, addr in ((NS_A, IF_A, "198.18.0.1/30"), (NS_B, IF_B, "198.18.0.2/30")):
        sh("ip", "-n", ns, "link", "set", ifc, "mtu", "65535")
        if NODE and ns == NS_A:
            sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", ns, "link", "set", "br0", "mtu", "65535")
            sh("ip", "-n", ns, "link", "set", ifc, "master", "br0")
            sh("ip", "-n", ns, "addr", "add", addr, "dev", "br0")
            # Promiscuous, so that the bridge hands every frame up to br0
            # too (the replayed frames are not addressed to it): a second
            # copy of each packet, as a node's bridge shows a pod's packet.
            sh("ip", "-n", ns, "link", "set", "br0", "promisc", "on")
            sh("ip", "-n", ns, "link", "set", "br0", "up")
        else:
            sh("ip", "-n", ns, "addr", "add", addr, "dev", ifc)
        sh("ip", "-n", ns, "link", "set", ifc, "up")


def teardown():
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# Set from the command line: CPU pinning (taskset prefixes) and preloading.
SENDER_CPU, OSPREY_CPU, PRELOAD = [], [], []


def tcpreplay(pcap, loops, extra):
    out = sh(*SENDER_CPU, "ip", "netns", "exec", NS_B, "tcpreplay", "-i", IF_B,
             "--loop", str(loops), *PRELOAD, *extra, pcap)
    sent = int(re.search(r"Successful packets:\s+(\d+)", out).group(1))
    rated = re.search(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps", out)
    return sent, float(rated.group(1)), float(rated.group(2))


def scrape():
    # The namespace's loopback is reached by running the request inside it.
    code = ("import urllib.request,sys;"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{PORT}/metrics').read().decode())")
    return sh("ip", "netns", "exec", NS_A, sys.executable, "-c", code)


def total(text, name):
    return sum(float(v) for n, v in re.findall(r"^(\w+)(?:\{[^}]*\})? (\S+)$", text, re.M)
               if n == name)


def quantile(text, name, q):
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(v))
                     for le, v in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M))
    if not buckets or buckets[-1][1] == 0:
        return None
    want = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= want:
            if le == float("inf"):
                return prev_le
            # Linear inside the bucket, as Prometheus' histogram_quantile.
            return prev_le + (le - prev_le) * (want - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return None


def start_osprey(logdir):
    cfg = os.path.join(logdir, "osprey.toml")
    with open(cfg, "w") as f:
        f.write("[output]\nrotate_interval_secs = 0\n")
    p = subprocess.Popen([*OSPREY_CPU, "ip", "netns", "exec", NS_A, OSPREY, "run",
                          "-i", "any" if NODE else IF_A,
                          "--config", cfg, "--log-dir", logdir,
                          "--metrics-addr", f"127.0.0.1:{PORT}"],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(logdir, "err"), "w"))
    for _ in range(300):
        try:
            code = ("import urllib.request;"
                    f"urllib.request.urlopen('http://127.0.0.1:{PORT}/readyz')")
            if subprocess.run(["ip", "netns", "exec", NS_A, sys.executable, "-c", code],
                              capture_output=True).returncode == 0:
                return p
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("osprey did not become ready")


def drops(text):
    return (total(text, "osprey_capture_kernel_drops_total")
            + total(text, "osprey_capture_interface_drops_total")
            + total(text, "osprey_pipeline_dropped_packets_total"))


def drop_kinds(text):
    """Where packets were lost: the kernel ring (capture thread too slow)
    or a conn worker's queue (conn worker too slow); and records not scored."""
    return (f"kernel {total(text, 'osprey_capture_kernel_drops_total'):.0f}, "
            f"interface {total(text, 'osprey_capture_interface_drops_total'):.0f}, "
            f"conn queue {total(text, 'osprey_pipeline_dropped_packets_total'):.0f}; "
            f"records not scored {total(text, 'osprey_pipeline_dropped_records_total'):.0f}"
            + (f"; node view: duplicates {total(text, 'osprey_conn_duplicate_packets_total'):.0f}"
               if NODE else ""))


def bare_capture(pcap, loops):
    """tcpreplay's top speed while a bare capture (tcpdump writing nowhere,
    same 64 MiB ring, block mode) reads the veth: the cost of capturing at
    all, which the kernel charges to the sender, with no analysis."""
    p = subprocess.Popen([*OSPREY_CPU, "ip", "netns", "exec", NS_A, "tcpdump", "-i", IF_A,
                          "-B", "65536",
                          "-w", "/dev/null", "-q"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        return tcpreplay(pcap, loops, ["--topspeed"])
    finally:
        p.terminate()
        p.wait(timeout=10)


def run_at(pcap, loops, pps):
    with tempfile.TemporaryDirectory() as d:
        p = start_osprey(d)
        extra = ["--topspeed"] if pps is None else [f"--pps={int(pps)}"]
        sent, mbps, rated = tcpreplay(pcap, loops, extra)
        time.sleep(1.5)
        text = scrape()
        p.terminate()
        p.wait(timeout=10)
        return sent, mbps, rated, drops(text), text


def report_latency(text):
    for name in ("osprey_last_packet_to_verdict_seconds", "osprey_record_to_verdict_seconds"):
        p50, p99 = quantile(text, name, 0.5), quantile(text, name, 0.99)
        if p50 is not None:
            print(f"{name}: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")


def at_fraction(a, top):
    """The issue's criterion as stated: tcpreplay paced at a fraction of
    its own top speed (alone), and nothing lost."""
    if a.fraction <= 0:
        return
    pps = a.fraction * top
    results = []
    for _ in range(a.runs):
        sent, mbps, rated, lost, text = run_at(a.pcap, a.loops, pps)
        results.append((rated, lost))
        print(f"  --pps={pps:,.0f} ({a.fraction:.2f} of top speed alone): achieved {rated:,.0f} pps, "
              f"{mbps:.1f} Mbps, drops {lost:.0f} of {sent} ({drop_kinds(text)})")
    clean = sum(1 for _, lost in results if lost == 0)
    rates = sorted(r for r, _ in results)
    print(f"at {a.fraction:.2f} of top speed: no drops in {clean} of {len(results)} runs; "
          f"median achieved {rates[len(rates) // 2]:,.0f} pps "
          f"= {rates[len(rates) // 2] / top:.2f} of top speed alone")
    report_latency(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pcap", default=os.path.join(ROOT, "..", "shared", "lab-pcaps",
                                                   "flood_syn.pcap"))
    # Long enough that the kernel ring (64 MiB holds ~10^5-10^6 small
    # packets) cannot hide a capture thread that falls behind.
    ap.add_argument("--loops", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    # The set-up: tcpreplay on one core, the capture on the other
    # (the kernel's veth receive path, which fills the capture ring, runs on
    # the sender's core), and the capture preloaded into memory (-K) so
    # that tcpreplay's top speed is not bounded by reading the file.
    ap.add_argument("--pin", action="store_true",
                    help="tcpreplay on CPU 1, osprey (or tcpdump) on CPU 0")
    ap.add_argument("--preload", action="store_true", help="tcpreplay -K")
    ap.add_argument("--node", action="store_true",
                    help="a bridge node: osprey on `any`, every packet seen twice")
    ap.add_argument("--fraction", type=float, default=0.8,
                    help="after top-speed runs without drops, also run paced at this "
                         "fraction of tcpreplay's top speed alone (0: skip)")
    a = ap.parse_args()
    global NODE
    NODE = a.node
    if a.pin:
        SENDER_CPU[:] = ["taskset", "-c", "1"]
        OSPREY_CPU[:] = ["taskset", "-c", "0"]
    if a.preload:
        PRELOAD[:] = ["-K"]
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, capture)")
    if not os.access(OSPREY, os.X_OK):
        sys.exit("build first: cargo build --release")
    have_tcpdump = subprocess.run(["sh", "-c", "command -v tcpdump"], capture_output=True).returncode == 0
    setup()
    try:
        # tcpreplay alone and tcpreplay with osprey capturing, interleaved
        # so that a busy host skews both alike; medians reported.
        alone, bare, with_osprey = [], [], []
        for _ in range(a.runs):
            sent, mbps, top = tcpreplay(a.pcap, a.loops, ["--topspeed"])
            alone.append(top)
            print(f"tcpreplay alone, top speed: {top:,.0f} pps, {mbps:.1f} Mbps ({sent} packets)")
            if have_tcpdump:
                _, bmbps, btop = bare_capture(a.pcap, a.loops)
                bare.append(btop)
                print(f"with a bare capture (tcpdump), top speed: {btop:,.0f} pps, {bmbps:.1f} Mbps")
            sent, mbps, rated, lost, text = run_at(a.pcap, a.loops, None)
            with_osprey.append((rated, mbps, lost, text))
            print(f"with osprey, top speed: {rated:,.0f} pps, {mbps:.1f} Mbps; drops {lost:.0f} "
                  f"of {sent} ({drop_kinds(text)})")
        top = sorted(alone)[len(alone) // 2]
        bare_top = sorted(bare)[len(bare) // 2] if bare else None
        clean = sorted((r for r in with_osprey if r[2] == 0), key=lambda r: r[0])
        if len(clean) == len(with_osprey):
            rated, mbps, _, text = clean[len(clean) // 2]
            print(f"no drops at top speed in {len(clean)} of {a.runs} runs: median {rated:,.0f} pps, "
                  f"{mbps:.1f} Mbps = {rated / top:.2f} of tcpreplay's median top speed alone "
                  f"({top:,.0f} pps)")
            if bare_top:
                print(f"tcpreplay's median top speed with a bare capture: {bare_top:,.0f} pps "
                      f"= {bare_top / top:.2f} of alone; with osprey = {rated / bare_top:.2f} of that")
            report_latency(text)
            at_fraction(a, top)
            return
        # Drops at top speed: bisect the paced rate for the highest without.
        lo, hi, best = 0.0, top, None
        for _ in range(7):
            mid = (lo + hi) / 2 if best is not None or lo > 0 else hi * 0.8
            sent, mbps, rated, lost, text = run_at(a.pcap, a.loops, mid)
            print(f"  --pps={mid:,.0f}: achieved {rated:,.0f} pps, {mbps:.1f} Mbps, drops {lost:.0f} "
                  f"({drop_kinds(text)})")
            if lost == 0:
                if best is None or rated > best[0]:
                    best = (rated, mbps, text)
                lo = mid
            else:
                hi = mid
        if best:
            rated, mbps, text = best
            print(f"highest rate without drops: {rated:,.0f} pps, {mbps:.1f} Mbps "
                  f"= {rated / top:.2f} of tcpreplay's top speed")
            report_latency(text)
        else:
            print("no rate without drops found")
    finally:
        teardown()


if __name__ == "__main__":
    main()
