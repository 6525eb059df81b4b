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


def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes([tag, n])
    elif n < 0x100:
        head = bytes([tag, 0x81, n])
    else:
        head = bytes([tag, 0x82, n >> 8, n & 0xFF])
    return head + body


def ctx_int(n, v):
    return tlv(0xA0 + n, tlv(0x02, bytes([v])))


def principal(*names):
    strings = b"".join(tlv(0x1B, n.encode()) for n in names)
    return tlv(0x30, ctx_int(0, 1) + tlv(0xA1, tlv(0x30, strings)))


def enc_data():
    return tlv(0x30, ctx_int(0, 18) + tlv(0xA2, tlv(0x04, b"\x5a" * 16)))


def krb_as_req():
    body = tlv(0x30, tlv(0xA0, tlv(0x03, b"\0\x50\0\0\0")) + tlv(0xA1, principal("alice"))
               + tlv(0xA2, tlv(0x1B, b"OSPREY.TEST")) + tlv(0xA3, principal("krbtgt", "OSPREY.TEST"))
               + tlv(0xA5, tlv(0x18, b"20370913024805Z")) + tlv(0xA7, tlv(0x02, b"\x2a"))
               + tlv(0xA8, tlv(0x30, tlv(0x02, b"\x12"))))
    return tlv(0x6A, tlv(0x30, ctx_int(1, 5) + ctx_int(2, 10) + tlv(0xA4, body)))


def krb_ap_req():
    ticket = tlv(0x61, tlv(0x30, ctx_int(0, 5) + tlv(0xA1, tlv(0x1B, b"OSPREY.TEST"))
                           + tlv(0xA2, principal("ldap", "dc.osprey.test")) + tlv(0xA3, enc_data())))
    return tlv(0x6E, tlv(0x30, ctx_int(0, 5) + ctx_int(1, 14) + tlv(0xA2, tlv(0x03, b"\0\x20\0\0\0"))
                         + tlv(0xA3, ticket) + tlv(0xA4, enc_data())))


def ldap_spnego_krb_bind():
    krb5_oid = bytes.fromhex("06092a864886f712010202")
    token = tlv(0x60, krb5_oid + b"\x01\x00" + krb_ap_req())
    init = tlv(0x30, tlv(0xA0, tlv(0x30, krb5_oid)) + tlv(0xA2, tlv(0x04, token)))
    spnego = tlv(0x60, bytes.fromhex("06062b0601050502") + tlv(0xA0, init))
    sasl = tlv(0x04, b"GSS-SPNEGO") + tlv(0x04, spnego)
    op = tlv(0x60, tlv(0x02, b"\x03") + tlv(0x04, b"") + tlv(0xA3, sasl))
    return tlv(0x30, tlv(0x02, b"\x01") + op)


def tcp_exchange(sp, dp, client_data, server_data):
    """Handshake, one segment each way, FIN both ways."""
    c, s = 100, 500
    pkts = [tcp(A, B, sp, dp, c, 0, 0x02), tcp(B, A, dp, sp, s, c + 1, 0x12),
            tcp(A, B, sp, dp, c + 1, s + 1, 0x10)]
    c, s = c + 1, s + 1
    pkts.append(tcp(A, B, sp, dp, c, s, 0x18, client_data))
    c += len(client_data)
    pkts.append(tcp(B, A, dp, sp, s, c, 0x18, server_data))
    s += len(server_data)
    pkts += [tcp(A, B, sp, dp, c, s, 0x11), tcp(B, A, dp, sp, s, c + 1, 0x11),
             tcp(A, B, sp, dp, c + 1, s + 1, 0x10)]
    return b"\0" + b"".join(record(ETHERNET, eth(p)) for p in pkts)


def kerberos_seeds():
    """Kerberos over UDP and TCP, and inside an LDAP SASL bind; each also
    truncated, so the violation paths start covered."""
    as_req = krb_as_req()
    framed = struct.pack("!I", len(as_req)) + as_req
    bind = ldap_spnego_krb_bind()
    return {
        "udp_krb_as_req": b"\0" + record(ETHERNET, eth(udp(A, B, 40100, 88, as_req)))
        + record(ETHERNET, eth(udp(B, A, 88, 40100, as_req[:20]))),
        "tcp_krb_as_req": tcp_exchange(40101, 88, framed, framed[:4] + b"\x7e" + framed[5:30]),
        "tcp_ldap_sasl_spnego_krb": tcp_exchange(40102, 389, bind, bind[:60]),
    }


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
    quic = quic_initial()
    if quic is not None:
        # A QUIC v1 client Initial (ClientHello in a CRYPTO frame) on 443,
        # and the same on a port only DPD finds, with a short-header reply.
        seeds["udp_quic_initial"] = b"\0" + record(ETHERNET, eth(udp(A, B, 50000, 443, quic)))
        seeds["udp_quic_dpd_port"] = (b"\0" + record(ETHERNET, eth(udp(A, B, 50001, 4433, quic)))
                                      + record(ETHERNET, eth(udp(B, A, 4433, 50001,
                                                                 b"\x41" + b"\x07" * 40))))
    socks = [b"\x05\x01\x00", b"\x05\x00", b"\x05\x01\x00\x01\xc6\x12\x00\x02\x00\x50",
             b"\x05\x00\x00\x01\xc6\x12\x00\x02\x00\x50", http]
    seq = [100, 500]
    pkts = [tcp(A, B, 40002, 10080, 99, 0, 0x02), tcp(B, A, 10080, 40002, 499, 100, 0x12),
            tcp(A, B, 40002, 10080, 100, 500, 0x10)]
    for i, m in enumerate(socks):
        orig = i % 2 == 0 or i == 4
        s_, d_ = (A, B) if orig else (B, A)
        sp, dp = (40002, 10080) if orig else (10080, 40002)
        k = 0 if orig else 1
        pkts.append(tcp(s_, d_, sp, dp, seq[k], seq[1 - k], 0x18, m))
        seq[k] += len(m)
    seeds["tcp_socks5_then_http"] = b"\0" + b"".join(record(ETHERNET, eth(p)) for p in pkts)
    seeds.update(kerberos_seeds())
    return seeds


def quic_initial():
    """A QUIC v1 client Initial protected as RFC 9001 5 says (needs the
    `cryptography` package, e.g. from tests/tools/.venv; None without)."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        print("note: no `cryptography`: QUIC seeds skipped", file=sys.stderr)
        return None
    import hashlib
    import hmac

    def expand_label(secret, label, length):
        full = b"tls13 " + label
        info = struct.pack("!HB", length, len(full)) + full + b"\0"
        out, block, i = b"", b"", 1
        while len(out) < length:
            block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
            out += block
            i += 1
        return out[:length]

    salt = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
    dcid = bytes(range(1, 9))
    initial = hmac.new(salt, dcid, hashlib.sha256).digest()
    secret = expand_label(initial, b"client in", 32)
    key, iv, hp = (expand_label(secret, b"quic key", 16), expand_label(secret, b"quic iv", 12),
                   expand_label(secret, b"quic hp", 16))
    body = b"\x03\x03" + b"\x5a" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    ext = b"\x00\x2b\x00\x03\x02\x03\x04"
    body += struct.pack("!H", len(ext)) + ext
    hello = b"\x01" + struct.pack("!I", len(body))[1:] + body
    frames = b"\x06\x00" + struct.pack("!H", 0x4000 | len(hello)) + hello
    frames += b"\x00" * (60 - len(frames) % 60)
    length = 1 + len(frames) + 16
    header = (b"\xc0" + struct.pack("!I", 1) + b"\x08" + dcid + b"\x04\x09\x09\x09\x09" + b"\x00"
              + struct.pack("!H", 0x4000 | length))
    pn_at = len(header)
    header += b"\x00"
    sealed = AESGCM(key).encrypt(iv, frames, header)
    pkt = bytearray(header + sealed)
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(bytes(pkt[pn_at + 4:pn_at + 20])) + enc.finalize()
    pkt[0] ^= mask[0] & 0x0F
    pkt[pn_at] ^= mask[1]
    return bytes(pkt)


def tcp_session(port, lines):
    """A TCP session on `port`: handshake, then each (from_client, data)
    in its own segment, acknowledged by the peer, then both FINs."""
    cs, ss = 1000, 5000
    pkts = [tcp(A, B, 40000, port, cs, 0, 0x02), tcp(B, A, port, 40000, ss, cs + 1, 0x12),
            tcp(A, B, 40000, port, cs + 1, ss + 1, 0x10)]
    cs, ss = cs + 1, ss + 1
    for from_client, data in lines:
        if from_client:
            pkts.append(tcp(A, B, 40000, port, cs, ss, 0x18, data))
            cs += len(data)
            pkts.append(tcp(B, A, port, 40000, ss, cs, 0x10))
        else:
            pkts.append(tcp(B, A, port, 40000, ss, cs, 0x18, data))
            ss += len(data)
            pkts.append(tcp(A, B, 40000, port, cs, ss, 0x10))
    pkts += [tcp(A, B, 40000, port, cs, ss, 0x11), tcp(B, A, port, 40000, ss, cs + 1, 0x11),
             tcp(A, B, 40000, port, cs + 1, ss + 1, 0x10)]
    return b"\0" + b"".join(record(ETHERNET, eth(p)) for p in pkts)


def ssh_packet(msg_type, payload):
    pad = 4
    return struct.pack("!IBB", len(payload) + 2 + pad, pad, msg_type) + payload + b"\0" * pad


def ssh_string(b):
    return struct.pack("!I", len(b)) + b


def analyzer_limit_seeds():
    """One seed per analyzer limit Zeek marks with an `X` in history, each
    tripping it at Zeek's default (the fuzz target sets nothing)."""
    dns_hdr = lambda flags, qd, an: struct.pack("!HHHHHH", 0x4242, flags, qd, an, 0, 0)
    question = b"\x01a\x00\x00\x01\x00\x01"
    # Answer 1 (NULL) holds 20 pointers, each to the one before; answer 2
    # is named by the last: a chain 21 deep.
    chain_at = 12 + len(b"\x01a\x01b\x00") + 4 + 12
    chain = b"".join(bytes([0xC0, 12 if i == 0 else chain_at + 2 * (i - 1)]) for i in range(20))
    deep = (dns_hdr(0x8180, 1, 2) + b"\x01a\x01b\x00\x00\x01\x00\x01"
            + b"\xc0\x0c\x00\x0a\x00\x01\x00\x00\x00\x00" + struct.pack("!H", len(chain)) + chain
            + bytes([0xC0, chain_at + 38]) + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x01")
    kex = b"\x07" * 16 + ssh_string(",".join("alg%d" % i for i in range(101)).encode())
    kex += ssh_string(b"x") * 9 + b"\0" * 5
    return {
        "limit_ftp_max_command_length": tcp_session(21, [
            (False, b"220 ready\r\n"), (True, b"USER anonymous\r\n"),
            (True, b"A" * 101 + b" x\r\n")]),
        "limit_dns_unknown_opcode": b"\0" + record(ETHERNET, eth(udp(A, B, 5353, 53,
                                                                   dns_hdr(0x1000, 1, 0) + question))),
        "limit_dns_max_queries": b"\0" + record(ETHERNET, eth(udp(A, B, 5353, 53,
                                                                dns_hdr(0x0100, 26, 0) + question * 26))),
        "limit_dns_compression_chain": b"\0" + record(ETHERNET, eth(udp(B, A, 53, 5353, deep))),
        "limit_ssh_kexinit_algorithms": tcp_session(22, [
            (True, b"SSH-2.0-osprey\r\n"), (False, b"SSH-2.0-seed\r\n"), (True, ssh_packet(20, kex))]),
        "limit_ssh_max_packet_length": tcp_session(22, [
            (True, b"SSH-2.0-osprey\r\n"), (False, b"SSH-2.0-seed\r\n"),
            (True, struct.pack("!I", 8 * 1024 * 1024 + 1) + b"\x04\x14" + b"\0" * 16)]),
        "limit_ssh_max_string_length": tcp_session(22, [
            (True, b"SSH-2.0-osprey\r\n"), (False, b"SSH-2.0-seed\r\n"),
            (True, ssh_packet(20, b"\x07" * 16 + struct.pack("!I", 2 * 1024 * 1024 + 1) + b"alg"))]),
        "limit_http_excessive_pipelining": tcp_session(80, [
            (True, b"GET / HTTP/1.1\r\n\r\n" * 102)]),
        "limit_smtp_invalid_transactions": tcp_session(25, [
            (False, b"220 mx\r\n"), (True, b"HELO osprey\r\n" + b"RCPT TO:<a@b>\r\n" * 26)]),
        "limit_http_mime_max_depth": tcp_session(80, [
            (True, b"POST / HTTP/1.1\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
             + b"Content-Type: message/rfc822\r\n\r\n" * 101 + b"x\r\n--b--\r\n")]),
        "limit_smtp_mime_max_header_bytes": tcp_session(25, [
            (False, b"220 mx\r\n"), (True, b"HELO osprey\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
            (True, b"Subject: a")]
            + [(True, b"\r\n\t" + b"x" * 1000)] * 70
            + [(True, b"\r\n\r\nbody\r\n.\r\n")]),
    }


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
    write("decode_conn", {**decode_conn_seeds(), **analyzer_limit_seeds()})
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
