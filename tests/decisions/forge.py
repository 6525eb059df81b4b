"""Forged-source attack for tests/decisions.rs: for each port, a SYN with
someone else's source address, then a blind ACK whose ack number is a
guess. Raw IPv4 socket, stdlib only; bounded by the port list.

usage: forge.py SRC DST PORTS   (PORTS: "1-300,8080")
"""
import random
import socket
import struct
import sys
import time


def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    t += t >> 16
    return ~t & 0xFFFF


def packet(src, dst, sport, dport, seq, ack, flags):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randrange(65536), 0, 64, 6, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def ports(spec):
    out = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def main():
    src, dst, spec = sys.argv[1], sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for p in ports(spec)[:2000]:
        sport = random.randrange(20000, 60000)
        seq = random.randrange(2**32)
        s.sendto(packet(src, dst, sport, p, seq, 0, 0x02), (dst, 0))
        time.sleep(0.002)
        guess = random.randrange(2**32)
        s.sendto(packet(src, dst, sport, p, (seq + 1) % 2**32, guess, 0x10), (dst, 0))
        time.sleep(0.002)


main()
