"""The victim's web service for tests/decisions.rs: GET answers 200, a
POST to a login path answers 401 (a password guess refused), as the lab's
nginx does. Threaded, so slow clients hold only their own thread.

usage: web.py PORT
"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, b"ok\n" * 200)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        self.rfile.read(min(n, 65536))
        self.reply(401, b"invalid credentials\n")

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


Server(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
