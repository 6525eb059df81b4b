#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

The seeds are built here, from a few packets and lines made for osprey,
not taken from any capture: libFuzzer starts from them, so that the first
minutes of a short CI run go to mutating valid traffic and valid files
instead of discovering Ethernet and TSV headers. Run from the repository
root after changing a target's input format; the files are committed.
"""

import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(src, dst, proto, payload, ident=1, frag=0x4000):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
                      bytes(src), bytes(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def l4sum(src, dst, proto, seg):
    pseudo = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return csum(pseudo + seg)


def tcp(src, dst, sp, dp, seq, ack, flags, data=b""):
    seg = struct.pack("!HHIIBBHHH", sp, dp, seq, ack, 5 << 4, flags, 65535, 0, 0) + data
    c = l4sum(src, dst, 6, seg)
    return ip4(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:])


def udp(src, dst, sp, dp, data):
    seg = struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
    c = l4sum(src, dst, 17, seg)
    return ip4(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:])


def icmp_echo(src, dst, typ, ident, seq):
    msg = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + b"osprey"
    c = csum(msg)
    return ip4(src, dst, 1, msg[:2] + struct.pack("!H", c) + msg[4:])


def eth(payload, ethertype=0x0800, vlan=None):
    head = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01"
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", ethertype) + payload


A = [198, 18, 0, 1]
B = [198, 18, 0, 2]
# Indices into LINKS of fuzz_targets/decode_conn.rs.
ETHERNET, RAW = 0, 3


def record(link, frame, dt_ms=1):
    return struct.pack("<BHHH", link, dt_ms, 0, len(frame)) + frame


def decode_conn_seeds():
    http = b"GET / HTTP/1.1\r\nHost: osprey\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    handshake = [
        tcp(A, B, 40000, 80, 100, 0, 0x02),
        tcp(B, A, 80, 40000, 500, 101, 0x12),
        tcp(A, B, 40000, 80, 101, 501, 0x10),
        tcp(A, B, 40000, 80, 101, 501, 0x18, http),
        tcp(B, A, 80, 40000, 501, 101 + len(http), 0x18, resp),
        tcp(A, B, 40000, 80, 101 + len(http), 501 + len(resp), 0x11),
        tcp(B, A, 80, 40000, 501 + len(resp), 102 + len(http), 0x11),
        tcp(A, B, 40000, 80, 102 + len(http), 502 + len(resp), 0x10),
    ]
    dns_q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06osprey\x04test\x00\x00\x01\x00\x01"
    seeds = {
        "tcp_http_ethernet": b"\0" + b"".join(record(ETHERNET, eth(p)) for p in handshake),
        "tcp_http_raw_no_checksums": b"\x01" + b"".join(record(RAW, p) for p in handshake),
        "tcp_syn_unanswered_then_timeout": b"\0"
        + record(ETHERNET, eth(handshake[0]))
        + struct.pack("<BHHH", ETHERNET, 0x8000 | 400, 0, 0),
        "udp_dns_vlan": b"\0"
        + record(ETHERNET, eth(udp(A, B, 5353, 53, dns_q), vlan=7))
        + record(ETHERNET, eth(udp(B, A, 53, 5353, dns_q[:2] + b"\x81\x80" + dns_q[4:]), vlan=7)),
        "icmp_echo": b"\0"
        + record(ETHERNET, eth(icmp_echo(A, B, 8, 7, 1)))
        + record(ETHERNET, eth(icmp_echo(B, A, 0, 7, 1))),
    }
    # One UDP datagram in two fragments, the second first.
    dgram = udp(A, B, 4000, 9999, b"x" * 40)[20:]
    first = ip4(A, B, 17, dgram[:24], ident=77, frag=0x2000)
    second = ip4(A, B, 17, dgram[24:], ident=77, frag=3)
    seeds["ipv4_fragments_out_of_order"] = b"\x01" + record(RAW, second) + record(RAW, first)
    # An IPv6 TCP SYN (checksum ignored: flag bit 0).
    v6 = struct.pack("!IHBB16s16s", 0x60000000, 20, 6, 64, b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x01",
                     b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x02")
    v6 += struct.pack("!HHIIBBHHH", 40001, 443, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    seeds["ipv6_syn"] = b"\x01" + record(ETHERNET, eth(v6, 0x86DD))
    return seeds


CONN_LOG_TSV = "\n".join([
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tconn",
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration"
    "\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory"
    "\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents",
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount"
    "\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]",
    "1700000000.000001\tCa1\t198.18.0.1\t40000\t198.18.0.2\t80\ttcp\thttp\t0.250000\t31\t40"
    "\tSF\t-\t-\t0\tShADadFf\t5\t303\t3\t200\t(empty)",
    "1700000001.5\tCa2\t198.18.0.1\t5353\t198.18.0.2\t53\tudp\tdns\t0.01\t28\t28\tSF\t-\t-\t0"
    "\tDd\t1\t56\t1\t56\t-",
    "1700000002\tCa3\t198.18.0.9\t8\t198.18.0.2\t0\ticmp\t-\t-\t-\t-\tOTH\t-\t-\t0\t-\t1\t34"
    "\t0\t0\tCa1,Ca2",
    "#close\t2024-01-01-00-00-00",
    "",
])

CONN_LOG_JSON = "\n".join([
    '{"ts":1700000000.000001,"uid":"Cj1","id.orig_h":"198.18.0.1","id.orig_p":40000,'
    '"id.resp_h":"198.18.0.2","id.resp_p":80,"proto":"tcp","service":"http","duration":0.25,'
    '"orig_bytes":31,"resp_bytes":40,"conn_state":"SF","missed_bytes":0,"history":"ShADadFf",'
    '"orig_pkts":5,"orig_ip_bytes":303,"resp_pkts":3,"resp_ip_bytes":200}',
    '{"ts":1700000003.0,"uid":"Cj2","id.orig_h":"2001:db8::1","id.orig_p":40001,'
    '"id.resp_h":"2001:db8::2","id.resp_p":443,"proto":"tcp","conn_state":"S0","history":"S",'
    '"orig_pkts":1,"orig_ip_bytes":60,"resp_pkts":0,"resp_ip_bytes":0,"tunnel_parents":["Cj1"]}',
    "",
])


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def config_rules_seeds():
    seeds = {
        "config_example_toml": b"\0" + read("docs/osprey.example.toml"),
        "config_small_yaml": b"\x01"
        + b"capture:\n  interfaces: [eth0]\n  snaplen_bytes: 1600\nmetrics:\n"
        b"  listen_addr: 127.0.0.1:9750\n  max_connections: 8\nrespond:\n  enforce: true\n"
        b"  allowlist: [10.0.0.0/8, 2001:db8::/32]\n",
        "rules_default_yaml": b"\x02" + read("rules/default.yaml"),
        "rules_examples_yaml": b"\x06" + read("rules/examples.yaml"),
        "rules_small_toml": b"\x03"
        + b'[[rules]]\nname = "scan"\npriority = 5\n[rules.evidence]\nwindow_secs = 60\n'
        b'failed_targets = 10\n[rules.action]\nkind = "rate_limit"\nttl_secs = 120\n',
    }
    return seeds


def pcapng_seeds():
    """Small pcapng files: the block types and the variations the reader
    handles (sections in both byte orders, interfaces of several link
    types, snapshot lengths and clocks, EPB, SPB and the obsolete PB,
    blocks it skips)."""

    class Ng:
        def __init__(self):
            self.out = b""
            self.e = "<"

        def block(self, typ, body):
            body += b"\0" * (-len(body) % 4)
            n = 12 + len(body)
            self.out += struct.pack(self.e + "II", typ, n) + body + struct.pack(self.e + "I", n)
            return self

        def shb(self, big=False):
            self.e = ">" if big else "<"
            return self.block(0x0A0D0D0A, struct.pack(self.e + "IHHq", 0x1A2B3C4D, 1, 0, -1))

        def opts(self, items):
            b = b""
            for code, value in items:
                b += struct.pack(self.e + "HH", code, len(value)) + value
                b += b"\0" * (-len(b) % 4)
            return b + b"\0" * 4 if items else b

        def idb(self, link, snaplen, items=()):
            return self.block(1, struct.pack(self.e + "HHI", link, 0, snaplen) + self.opts(items))

        def epb(self, iface, ts, data, wire=None):
            wire = len(data) if wire is None else wire
            body = struct.pack(self.e + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), wire)
            body += data + b"\0" * (-len(data) % 4)
            return self.block(6, body + self.opts([(2, struct.pack(self.e + "I", 1))]))

        def spb(self, data):
            return self.block(3, struct.pack(self.e + "I", len(data)) + data)

        def pb(self, iface, ts, data):
            body = struct.pack(self.e + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
            return self.block(2, body + data)

    a, b = [10, 0, 0, 1], [10, 0, 0, 2]
    q = udp(a, b, 40000, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    r = udp(b, a, 53, 40000, b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00")
    syn = tcp(a, b, 40001, 80, 1000, 0, 0x02)
    sll = bytes([0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0, 0x08, 0x00])
    micro = 1_700_000_000_000_000
    seeds = {}
    ng = Ng().shb().idb(1, 65535).epb(0, micro, eth(q)).epb(0, micro + 1500, eth(r))
    seeds["ethernet_udp"] = ng.out
    ng = (Ng().shb().idb(1, 65535).block(4, b"\0" * 8)
          .idb(113, 8192, [(9, b"\x09")])
          .epb(0, micro, eth(syn)).epb(1, micro * 1000 + 7, sll + r)
          .block(5, b"\0" * 12)
          .shb(big=True).idb(101, 0, [(9, b"\x03"), (14, struct.pack(">q", 1000))])
          .epb(0, micro // 1000, q).spb(r).pb(0, micro // 1000 + 3, q))
    seeds["two_sections_mixed_links"] = ng.out
    ng = Ng().shb(big=True).idb(276, 262144, [(9, b"\x94")]).epb(0, micro, bytes(20) + q)
    seeds["big_endian_sll2_binary_clock"] = ng.out
    return seeds


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("decode_conn", decode_conn_seeds())
    write("zeek_log", {
        "tsv_with_features": b"\x01" + CONN_LOG_TSV.encode(),
        "tsv_identity_only": b"\0" + CONN_LOG_TSV.encode(),
        "json_with_features": b"\x01" + CONN_LOG_JSON.encode(),
    })
    write("config_rules", config_rules_seeds())
    write("pcapng", pcapng_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
