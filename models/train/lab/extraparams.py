#!/usr/bin/env python3
"""Every randomised parameter of extra-pcaps.sh, drawn from (seed, scale).

usage: extraparams.py SEED SCALE [PARAMS.json]

Prints shell assignments (KEY='value') for extra-pcaps.sh to eval, and writes the
same values as JSON for the record.  Addresses, ports, counts, rates, timings,
sizes, tool options and the scenario order all come from here, so two seeds give
two different sets.  The generator is seeded with the string "olab:<seed>", so
seed N here draws other values (and another /24) than seed N of the shared lab.
"""
import json
import random
import shlex
import sys

BENIGN = ["benign_restart_retry", "benign_rolling_poll", "benign_port_fallback",
          "benign_dns_down", "benign_health_probes", "benign_tls_http2", "benign_bulk",
          "benign_short_bursts", "benign_idle_keepalive"]
SCANS = ["scan_syn", "scan_connect", "scan_udp", "scan_ack", "scan_fin", "scan_xmas"]
# Scenarios added later draw their parameters from their own generator and take a place in
# the order drawn from it, so the older seeds keep every value they had before.
LATER = ["benign_http_errors"]
ATTACKS = SCANS + ["scan_sweep", "http_bruteforce", "slowloris", "dns_tunnel",
                   "flood_syn", "flood_udp", "flood_icmp"]
NMAP_FLAG = {"scan_syn": "-sS", "scan_connect": "-sT", "scan_udp": "-sU",
             "scan_ack": "-sA", "scan_fin": "-sF", "scan_xmas": "-sX"}
UDP_POOL = [7, 9, 19, 53, 67, 68, 69, 111, 123, 135, 137, 138, 139, 161, 162, 389, 445,
            500, 514, 520, 623, 1434, 1900, 4500, 5060, 5353, 11211, 27015, 49152]


def main():
    seed = int(sys.argv[1])
    scale = float(sys.argv[2])
    json_out = sys.argv[3] if len(sys.argv) > 3 else None
    if scale <= 0:
        raise SystemExit("SCALE must be > 0")
    r = random.Random(f"olab:{seed}")

    def sc(n, lo=1):
        return max(lo, int(round(n * scale)))

    p = {}
    # ---------------------------------------------------------------- addresses
    v4_second = r.choice([18, 19])
    v4_third = r.randrange(0, 256)
    v6_sub = r.randrange(1, 0xffff)
    n_targets = r.randrange(3, 7)
    names = ["server", "client1", "client2", "client3", "attacker"] + \
            [f"t{i}" for i in range(1, n_targets + 1)]
    hosts = r.sample(range(2, 250), len(names))
    for n, h in zip(names, hosts):
        p[f"IP4_{n.upper()}"] = f"198.{v4_second}.{v4_third}.{h}"
        p[f"IP6_{n.upper()}"] = f"fd00:1ab:0:{v6_sub:x}::{h:x}"
        p[f"MAC_{n.upper()}"] = "02:" + ":".join(f"{r.randrange(256):02x}" for _ in range(5))
    p["NET4"] = f"198.{v4_second}.{v4_third}.0/24"
    p["NET6"] = f"fd00:1ab:0:{v6_sub:x}::/64"
    p["TARGETS"] = " ".join(f"t{i}" for i in range(1, n_targets + 1))

    # ---------------------------------------------------------------- services
    p["HTTP_PORT"] = r.choice([80, 8080, 8000, 8081, 8008])
    p["TLS_PORT"] = r.choice([443, 8443, 4443, 9443])
    p["APP_PORT"] = r.choice([3000, 5000, 8088, 8090, 9080, 7070, 6080])
    p["SSH_PORT"] = r.choice([22, 2222, 22022])
    p["KA_PORT"] = r.randrange(9100, 9999)
    p["INTERNAL_PORT"] = r.randrange(20000, 30000)      # loopback upstream of /submit
    p["DNS_ZONE"] = r.choice(["lab.test", "corp.test", "intra.test", "office.test",
                              "svc.test", "home.arpa"])
    p["TLS_KEY"] = r.choice(["rsa:2048", "rsa:3072", "ec:prime256v1", "ec:secp384r1"])
    p["KEEPALIVE_TIMEOUT"] = r.randrange(8, 61)            # nginx keepalive_timeout (s)
    p["SSHD_CLIENT_ALIVE"] = r.choice([0, 0, 10, 15, 20])
    # open ports on the small target hosts (labtools.py ka-server on each)
    pool = [22, 80, 443, 445, 3389, 8080, 21, 23, 3306, 5432]
    p["TARGET_PORTS"] = " ".join(
        ",".join(str(x) for x in sorted(r.sample(pool, r.randrange(0, 3)))) or "-"
        for _ in range(n_targets))
    tg = r.sample(range(1, n_targets + 1), 2)
    p["DEAD_DNS_REFUSE"] = f"t{tg[0]}"     # no DNS server: ICMP port unreachable
    p["DEAD_DNS_SILENT"] = f"t{tg[1]}"     # nftables drops port 53: no answer at all

    # ---------------------------------------------------------------- static content
    p["HTTP_FILE_SIZES"] = " ".join(str(x) for x in sorted(r.sample(
        [300, 700, 2048, 5000, 12000, 40000, 90000, 250000, 600000], 5)))
    bulk = sorted(r.sample(range(10, 46), 3))
    p["BULK_SIZES_MB"] = " ".join(str(x) for x in bulk)

    # ---------------------------------------------------------------- benign_restart_retry
    p["RR_DOWN_SECS"] = r.randrange(6, 15)
    p["RR_BACKOFF_BASE_MS"] = r.randrange(150, 800)
    p["RR_BACKOFF_FACTOR"] = f"{r.uniform(1.4, 2.2):.2f}"
    p["RR_BACKOFF_CAP_MS"] = r.randrange(2000, 5000)
    p["RR_JITTER_PCT"] = r.choice([0, 10, 25, 50])
    p["RR_CURL_RETRY"] = r.randrange(5, 10)               # curl --retry N --retry-connrefused
    p["RR_CURL_DELAY"] = r.choice([0, 0, 1, 2])           # 0: curl's own doubling backoff
    p["RR_AFTER_REQS"] = sc(r.randrange(3, 12))
    p["RR_V6_CLIENT"] = r.choice([0, 3, 3])               # which client (if any) retries over IPv6

    # ---------------------------------------------------------------- benign_rolling_poll
    p["RP_SECS"] = r.randrange(26, 40)
    p["RP_INTERVALS_MS"] = " ".join(str(r.randrange(500, 2001)) for _ in range(3))
    p["RP_CLIENTS"] = r.randrange(1, 4)
    d1 = r.randrange(4, 9)
    p["RP_DOWN1_AT"], p["RP_DOWN1_SECS"] = d1, r.randrange(2, 7)
    p["RP_DOWN2_AT"] = d1 + p["RP_DOWN1_SECS"] + r.randrange(5, 11)
    p["RP_DOWN2_SECS"] = r.randrange(2, 7)
    p["RP_PATH"] = r.choice(["/api/status", "/healthz", "/api/status?full=1", "/"])

    # ---------------------------------------------------------------- benign_port_fallback
    live = r.choice(["http", "https"])
    p["PF_LIVE"] = live
    dead_pool = [x for x in [8443, 8080, 8000, 3000, 5000, 9090, 8888, 443, 80, 8081, 4443]
                 if x not in (p["HTTP_PORT"], p["TLS_PORT"], p["APP_PORT"], p["SSH_PORT"])]
    p["PF_DEAD_PORTS"] = " ".join(str(x) for x in r.sample(dead_pool, r.randrange(1, 4)))
    p["PF_ROUNDS"] = sc(r.randrange(4, 11))
    p["PF_SLEEP_MS"] = r.randrange(400, 3000)
    p["PF_CLIENTS"] = r.randrange(2, 4)
    p["PF_V6_PCT"] = r.choice([0, 10, 25])

    # ---------------------------------------------------------------- benign_dns_down
    p["DD_LOOKUPS"] = sc(r.randrange(10, 25))           # per client, at most
    p["DD_SECS"] = r.randrange(16, 26)                  # and at most this long
    p["DD_DIG_TIME"] = r.choice([1, 1, 2])
    p["DD_DIG_TRIES"] = r.choice([1, 2])
    p["DD_RES_ATTEMPTS"] = r.choice([1, 2])               # resolv.conf options attempts:N
    p["DD_SLEEP_MS"] = r.randrange(200, 1500)
    p["DD_FIRST_DEAD"] = r.choice(["refuse", "silent"])   # which dead resolver resolv.conf lists first

    # ---------------------------------------------------------------- benign_health_probes
    p["HP_SECS"] = r.randrange(30, 46)
    probes = [f"http:{p['HTTP_PORT']}:/healthz", f"http:{p['APP_PORT']}:/healthz",
              f"tcp:{p['SSH_PORT']}", f"tcp:{p['KA_PORT']}", f"tcp:{p['APP_PORT']}",
              f"http:{p['APP_PORT']}:/api/status"]
    chosen = [probes[1]] + r.sample([x for x in probes if x != probes[1]], r.randrange(2, 5))
    p["HP_PROBES"] = " ".join(f"{x}@{r.randrange(1, 11)}" for x in chosen)   # kind:port[:path]@period
    p["HP_PROBERS"] = r.randrange(1, 3)                   # nodes (clients) running probes
    p["HP_DOWN_AT"] = r.randrange(6, 14)
    p["HP_DOWN_SECS"] = r.randrange(8, 18)
    p["HP_UA"] = f"kube-probe/1.{r.randrange(24, 31)}"

    # ---------------------------------------------------------------- benign_tls_http2
    p["TLS_REQS"] = sc(r.randrange(10, 26))               # curl invocations per client
    p["TLS_MAX_URLS"] = r.randrange(3, 9)                 # URLs per keep-alive invocation
    p["TLS_VERSION"] = r.choice(["1.2", "1.3", "mixed"])
    p["TLS_H2_PCT"] = r.randrange(30, 71)
    p["TLS_SLEEP_MS"] = r.randrange(50, 600)
    p["TLS_V6_PCT"] = r.choice([0, 10, 20])

    # ---------------------------------------------------------------- benign_bulk
    jobs = []
    for _ in range(r.randrange(4, 6)):
        jobs.append(":".join([r.choice(["down", "down", "up"]), r.choice(["http", "https"]),
                              str(r.choice(bulk)),
                              r.choice(["0", "0", f"{r.randrange(3, 12)}M"])]))
    p["BULK_JOBS"] = " ".join(jobs)                       # dir:proto:MB:limit-rate
    p["BULK_PARALLEL"] = r.choice([1, 2])

    # ---------------------------------------------------------------- benign_short_bursts
    p["SB_BURSTS"] = r.randrange(2, 4)                    # per client
    p["SB_CONNS"] = " ".join(str(sc(r.randrange(50, 201))) for _ in range(3))
    p["SB_MODES"] = " ".join(r.choice(["loop", "multi", "parallel"]) for _ in range(3))
    p["SB_PARALLEL"] = r.randrange(3, 11)
    p["SB_PAUSE_MS"] = r.randrange(800, 4000)

    # ---------------------------------------------------------------- benign_idle_keepalive
    p["IK_SECS"] = r.randrange(40, 61)
    p["IK_KA_IDLE"] = " ".join(str(r.randrange(5, 16)) for _ in range(3))
    p["IK_SSH_ALIVE"] = " ".join(str(r.randrange(5, 16)) for _ in range(2))
    p["IK_SSH_SESSIONS"] = r.randrange(1, 3)
    p["IK_KA_SESSIONS"] = r.randrange(2, 4)

    # ---------------------------------------------------------------- nmap scans
    slow = set(r.sample(SCANS, r.randrange(2, 4)))
    for s in SCANS:
        key = s.upper()
        udp = s == "scan_udp"
        kind = r.choice(["top", "range", "list"])
        if kind == "top":
            ports = f"--top-ports {r.randrange(15, 50) if udp else r.randrange(100, 1001)}"
        elif kind == "range":
            n = r.randrange(15, 45) if udp else r.randrange(200, 1500)
            lo = r.randrange(1, 60000 - n)
            if r.random() < 0.5:
                lo = r.randrange(1, 200)
            ports = f"-p {lo}-{lo + n - 1}"
        else:
            pl = r.sample(UDP_POOL, r.randrange(8, 20)) if udp else \
                r.sample(range(1, 65536), r.randrange(20, 200))
            ports = "-p " + ",".join(str(x) for x in sorted(pl))
        timing = r.choice(["-T3", "-T4", "-T4", "-T5"])
        p[f"{key}_RUNS"] = 2 if s in slow else 1
        p[f"{key}_1"] = f"{timing} --max-retries {r.choice([1, 2])} {ports}"
        if s in slow:        # a slow variant: -T2 or a fixed --scan-delay, few ports
            if r.random() < 0.5:
                n = r.randrange(8, 20) if not udp else r.randrange(6, 12)
                opt = "-T2"
            else:
                n = r.randrange(15, 40) if not udp else r.randrange(8, 16)
                opt = f"-T3 --scan-delay {r.randrange(100, 500)}ms"
            pl = r.sample(UDP_POOL, n) if udp else r.sample(range(1, 10000), n)
            p[f"{key}_2"] = f"{opt} --max-retries 1 -p " + ",".join(str(x) for x in sorted(pl))
    p["SCAN_V6"] = r.choice(["none", "scan_syn", "scan_connect", "scan_ack"])
    p["SCAN_V6_OPTS"] = f"-T4 --max-retries 1 --top-ports {r.randrange(30, 200)}"

    # ---------------------------------------------------------------- scan_sweep
    sweep_pool = [22, 80, 443, 445, 3389, 8080, 23, 21, 3306, 139]
    p["SW_PORTS"] = ",".join(str(x) for x in sorted(r.sample(sweep_pool, r.randrange(2, 5))))
    p["SW_CONNECT_PORTS"] = r.choice(["-", ",".join(str(x) for x in sorted(r.sample(sweep_pool, r.randrange(1, 5))))])
    p["SW_TIMING"] = r.choice(["-T3", "-T4", "-T4", "-T5"])
    p["SW_PING_PROBES"] = r.choice(["-PE", "-PE -PS443 -PA80", "-PE -PP", "-PS22,80,443",
                                    "-PE -PS443 -PA80 -PP"])
    p["SW_SN_SCOPE"] = r.choice(["hosts", "hosts", "net"])  # -sn over the live hosts or the /24
    p["SW_SN_NET"] = f"198.{v4_second}.{v4_third}.{r.choice([0, 64, 128, 192])}/26"
    p["SW_SCRIPTED"] = r.choice([0, 1])                     # also a shell ping loop over the hosts
    p["SW_V6"] = r.choice([0, 1])                           # also the -sS sweep over the IPv6 addresses

    # ---------------------------------------------------------------- http_bruteforce
    paths = ["/login", "/wp-login.php", "/admin/login", "/api/v1/auth", "/user/signin",
             "/account/login", "/auth", "/signin", "/manager/html", "/xmlrpc.php"]
    a, b = r.sample(paths, 2)
    p["BR_401_PATH"], p["BR_FORM_PATH"] = a, b
    p["BR_401_REQS"] = sc(r.randrange(100, 260))
    p["BR_401_SLEEP_MS"] = r.choice([0, 2, 10, 50, 100])
    p["BR_401_REUSE"] = r.choice([1, 1, 1, 5, 20])        # attempts per TCP connection (curl --next)
    p["BR_FORM_REQS"] = sc(r.randrange(100, 260))
    p["BR_FORM_SLEEP_MS"] = r.choice([0, 5, 20, 80, 200])
    p["BR_FORM_REUSE"] = r.choice([1, 1, 10, 50])
    p["BR_FORM_TLS"] = r.choice([0, 0, 1])

    # ---------------------------------------------------------------- slowloris
    p["SL_VARIANT"] = r.choice(["shared", "ramp"])         # labtools.py slowloris or olabtools ramp
    p["SL_CONNS"] = sc(r.randrange(60, 260))
    p["SL_SECS"] = r.randrange(18, 28)
    p["SL_INTERVAL"] = r.choice([1, 2, 10, 12, 15])
    p["SL_RAMP_SECS"] = r.randrange(3, 10)
    p["RUDY_CONNS"] = sc(r.randrange(20, 120))
    p["RUDY_SECS"] = r.randrange(18, 28)
    p["RUDY_INTERVAL"] = r.choice([1, 2, 4, 8])
    p["RUDY_CHUNK"] = r.choice([1, 1, 4, 16, 64])
    p["RUDY_CLEN"] = r.choice([10000, 100000, 1000000, 50000000])
    p["RUDY_PATH"] = r.choice(["/submit", "/submit/comment", "/submit/form"])

    # ---------------------------------------------------------------- dns_tunnel
    encs = r.sample(["hex", "b64url", "b32"], 2)
    if "b32" in encs and encs.index("b32") == 0:
        encs.reverse()
    qts = [r.choice(["TXT", "TXT", "A", "AAAA", "CNAME", "NULL", "MX"]), "TXT"]
    r.shuffle(qts)
    runs = []
    for e, q in zip(encs, qts):
        nl = r.randrange(1, 4)
        ll = r.randrange(20, 64) if nl < 3 else r.randrange(20, 56)
        runs.append(":".join(str(x) for x in [e, ll, nl, q, sc(r.randrange(150, 420)),
                                              r.choice([1, 3, 8, 20, 40]),
                                              r.choice([1, 5, 50, 1000]),
                                              r.choice(["4", "4", "6"])]))
    p["TUNNEL_RUNS"] = " ".join(runs)       # enc:labellen:labels:qtype:n:sleep_ms:per_sock:ipver
    p["TUNNEL_DOMAIN"] = r.choice(["a", "d", "ns1", "cdn-sync", "metrics", "api-edge"]) + \
        "." + p["DNS_ZONE"]

    # ---------------------------------------------------------------- floods (hping3 -i uN)
    def flood_runs():
        ivs = r.sample([10, 20, 50, 100, 200, 500, 1000], r.randrange(2, 4))
        out = []
        for iv in sorted(ivs):
            cap = int(6_000_000 / iv)      # at most ~6 s at the nominal rate
            out.append(f"u{iv}:{sc(min(cap, r.randrange(2000, 12000)))}")
        return " ".join(out)
    p["FS_RUNS"] = flood_runs()
    p["FS_PORT"] = r.choice([p["HTTP_PORT"], p["TLS_PORT"], p["SSH_PORT"]])
    p["FS_PORT_MODE"] = r.choice(["fixed", "fixed", "incr"])   # -p N or -p ++N
    p["FS_DATA"] = r.choice([0, 0, 16, 120])
    p["FS_WIN"] = r.choice([64, 512, 1024, 8192, 29200, 65535])
    p["FU_RUNS"] = flood_runs()
    p["FU_PORT"] = r.choice([53, r.randrange(1025, 65000), r.randrange(1025, 65000)])
    p["FU_SIZE"] = r.choice([0, 8, 64, 256, 1024])
    p["FI_RUNS"] = flood_runs()
    p["FI_SIZE"] = r.choice([0, 56, 200, 1000])
    p["FI_PING_FLOOD"] = r.choice([0, 1])                 # one extra run with ping -f

    # ---------------------------------------------------------------- mixed_failures
    p["MIX_SECS"] = r.randrange(45, 66)
    p["MIX_ATTACKS"] = " ".join(r.sample(["scan_ack", "scan_fin", "scan_xmas", "http_bruteforce",
                                          "slowloris", "dns_tunnel", "flood_icmp", "scan_udp"],
                                         r.randrange(2, 4)))
    p["MIX_FRACTION"] = f"{r.uniform(0.2, 0.4):.2f}"
    p["MIX_START_DELAY"] = r.randrange(4, 12)

    order = BENIGN + ATTACKS
    r.shuffle(order)
    p["SUBSEED"] = r.randrange(1, 2**31)

    # ---------------------------------------------------------------- benign_http_errors
    # (its own generator: see LATER)
    h = random.Random(f"olab:{seed}:benign_http_errors")
    p["HE_SECS"] = h.randrange(35, 56)
    # the site (olabtools.py site): an unreadable directory (403 from the file system), a
    # Basic-auth area, an API whose absent objects are missing files (404), a location that
    # denies (403) and one that answers 404
    p["HE_FORBIDDEN_DIR"] = h.choice(["/intranet/", "/archive/", "/private/", "/projects/", "/reports/"])
    p["HE_AUTH_DIR"] = h.choice(["/team/", "/members/", "/staff/", "/wiki/"])
    p["HE_AUTH_USER"] = h.choice(["alice", "bob", "carol", "dmitri", "erin", "farah"])
    p["HE_API_PREFIX"] = h.choice(["/v1/objects", "/rest/items", "/data/records", "/store/v2/products"])
    p["HE_API_IDS"] = h.randrange(200, 5000)              # ids 1..N, of which HE_API_HIT_PCT % exist
    p["HE_API_HIT_PCT"] = h.randrange(15, 76)
    p["HE_DENY_PATH"] = h.choice(["/server-status", "/nginx_status", "/status/internal", "/metrics"])
    p["HE_GONE_PREFIX"] = h.choice(["/old/", "/legacy/", "/v0/", "/blog-old/"])
    p["HE_ROBOTS"] = h.choice([0, 1])                     # robots.txt exists (else 404)
    p["HE_POSTS"] = h.randrange(5, 20)                    # /news/2024/post-K.html, K = 1..N
    p["HE_IMAGES"] = h.randrange(6, 20)                   # /img/photo-K.jpg, K = 1..N
    # who runs: kind:client:ipver:conn, where conn is ka (one keep-alive connection, or a
    # pool of them for browsers) or new (a connection per request); at least one of each kind
    # but the crawler, >= 1 over IPv6, >= 1 crawler or api client with a connection per request
    p["HE_V6_PCT"] = h.choice([10, 20, 30])
    kinds = ["browser"] * h.randrange(1, 4) + ["crawler"] * (h.random() < 0.75) + \
        ["poller"] * h.randrange(1, 3) + ["api"] * h.randrange(1, 3) + ["login"]
    vers = [6 if h.randrange(100) < p["HE_V6_PCT"] else 4 for _ in kinds]
    if 6 not in vers:
        vers[h.randrange(len(vers))] = 6
    conns = [{"crawler": h.choice(["ka", "new"]), "poller": h.choice(["new", "new", "ka"]),
              "api": h.choice(["ka", "new"])}.get(k, "ka") for k in kinds]
    big = [i for i, k in enumerate(kinds) if k in ("crawler", "api")]
    if all(conns[i] == "ka" for i in big):
        conns[h.choice(big)] = "new"
    p["HE_PERSONAS"] = " ".join(f"{k}:{h.randrange(1, 4)}:{v}:{c}" for k, v, c in zip(kinds, vers, conns))
    p["HE_CONN_CLOSE_HDR"] = h.choice([0, 1])             # one-request connections send Connection: close
    # browsers: page loads over HE_BROWSER_CONNS keep-alive connections
    p["HE_PAGES"] = sc(h.randrange(4, 11))                # page loads per browser
    lo = h.randrange(5, 11)
    p["HE_BURST"] = f"{lo}-{h.randrange(max(lo + 3, 12), 31)}"   # subresources per page load
    p["HE_BURST_SPREAD_MS"] = h.randrange(100, 900)       # all of them within this time
    p["HE_BROWSER_CONNS"] = h.randrange(2, 7)
    p["HE_THINK_MS"] = h.randrange(800, 6000)             # mean pause between page loads
    p["HE_MISSING_PCT"] = h.randrange(5, 40)              # subresources that are missing (404)
    p["HE_DEPLOY_BROKEN_PCT"] = h.randrange(10, 50)       # page loads whose assets are unreadable (403)
    p["HE_BROKEN_LINK_PCT"] = h.randrange(5, 30)          # page loads of a broken link (404/403)
    p["HE_FAVICON_PCT"] = h.choice([30, 60, 100])         # page loads that ask for /favicon.ico (404)
    p["HE_POST_PCT"] = h.choice([0, 5, 10, 20])           # page loads followed by a form POST
    # link checker / crawler
    p["HE_CRAWL_URLS"] = sc(h.randrange(30, 121))
    p["HE_CRAWL_DELAY_MS"] = h.randrange(100, 1500)
    p["HE_CRAWL_HEAD_PCT"] = h.choice([0, 30, 70, 100])
    p["HE_CRAWL_BROKEN_PCT"] = h.randrange(15, 60)
    # pollers of a forbidden or missing URL (and sometimes a working one as well)
    npoll = kinds.count("poller")
    broken = [p["HE_DENY_PATH"], p["HE_GONE_PREFIX"] + "feed.xml", "/config/client.json",
              p["HE_FORBIDDEN_DIR"] + "status.json", "/status.json"]
    p["HE_POLL_PATHS"] = " ".join(
        h.choice(broken) + h.choice(["", "", "|/healthz", "|/"]) for _ in range(npoll))
    p["HE_POLL_MS"] = " ".join(str(h.randrange(1000, 5001)) for _ in range(npoll))
    p["HE_POLLS"] = sc(h.randrange(10, 31))
    # API clients looking up objects, many of them absent
    p["HE_API_REQS"] = sc(h.randrange(30, 101))
    p["HE_API_SLEEP_MS"] = h.randrange(50, 800)
    p["HE_API_HEAD_PCT"] = h.choice([0, 10, 20])
    p["HE_API_POST_PCT"] = h.choice([3, 8, 15])
    p["HE_API_BATCH"] = h.choice([0, 5, 10, 20])          # occasional lookups back to back
    # a user who mistypes the password once (sometimes twice), then gets in
    p["HE_LOGINS"] = sc(h.randrange(1, 4))
    p["HE_LOGIN_TYPING_MS"] = h.randrange(1500, 6000)
    p["HE_LOGIN_AFTER"] = h.randrange(3, 10)
    p["HE_LOGIN_TWO_TYPOS_PCT"] = h.choice([0, 20, 40])
    order.insert(h.randrange(len(order) + 1), "benign_http_errors")
    p["SCENARIO_ORDER"] = " ".join(order + ["mixed_failures"])

    for k, v in p.items():
        print(f"{k}={shlex.quote(str(v))}")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"seed": seed, "scale": scale, **p}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
