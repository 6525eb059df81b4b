"""A client of a resolver that is down, for tests/decisions.rs: COUNT
DNS queries over UDP, each from a new port, each waiting TIMEOUT seconds
for an answer that never comes.

usage: dns_down.py RESOLVER COUNT TIMEOUT
"""
import random
import socket
import struct
import sys

resolver, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for i in range(count):
    q = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l for l in [b"svc", b"example", b"test"]) + b"\0"
    q += struct.pack("!HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (resolver, 53))
        s.recvfrom(512)
    except OSError:
        pass
    s.close()
