"""A local HTTP/1.1 service for the http plugin tests, and a small client
that reads responses off a raw socket (so pipelining and upgrades can be
checked byte by byte)."""
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import helpers as H


def pattern(n, seed=7):
    block = H.pattern_block(seed, 1 << 20)
    reps, rest = divmod(n, len(block))
    return block * reps + block[:rest]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _record(self):
        with self.server.lock:
            self.server.seen.append((self.command, self.path, list(self.headers.items())))

    def _send(self, status, body, ctype="application/octet-stream", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        h = hashlib.sha256()
        got = 0
        while got < n:
            d = self.rfile.read(min(1 << 20, n - got))
            if not d:
                break
            h.update(d)
            got += len(d)
        self._digest = (got, h.hexdigest())
        return None

    def do_GET(self):
        self._record()
        p = self.path
        if p.startswith("/size/"):
            return self._send(200, pattern(int(p[6:])))
        if p == "/headers":
            body = json.dumps({"headers": list(self.headers.items())}).encode()
            return self._send(200, body, "application/json",
                              extra=[("X-Secret", "s3"), ("X-Keep", "k")])
        if p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return None
        if p == "/sse":
            return self._sse()
        if p == "/ws":
            return self._ws()
        if p == "/once":
            # keep-alive headers, but the connection ends after this response
            self._send(200, b"once")
            self.close_connection = True
            return None
        if p == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
            return None
        return self._send(200, b"hello from " + p.encode())

    do_HEAD = do_GET

    def _sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(3):
            ev = b"data: %d %f\n\n" % (i, time.time())
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.wfile.flush()
            with self.server.lock:
                self.server.sse_sent.append(time.monotonic())
            time.sleep(0.3)
        self.wfile.write(b"0\r\n\r\n")

    def _ws(self):
        if self.headers.get("Upgrade", "").lower() != "websocket":
            return self._send(400, b"not an upgrade")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        self.wfile.write(b"server-hello")
        self.wfile.flush()
        while True:
            d = self.connection.recv(65536)
            if not d:
                break
            self.connection.sendall(b"echo:" + d)
        self.close_connection = True

    def do_POST(self):
        self._record()
        self._digest = None
        body = self._body()
        if body is not None:
            n, digest = len(body), hashlib.sha256(body).hexdigest()
        else:
            n, digest = self._digest
        if self.path == "/echo" and body is not None:
            return self._send(200, body)
        return self._send(200, json.dumps({"len": n, "sha": digest}).encode(), "application/json")

    do_PUT = do_POST


class App:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.httpd.seen = []
        self.httpd.sse_sent = []
        self.httpd.accepted = 0
        orig = self.httpd.process_request

        def counted(request, addr):
            with self.httpd.lock:
                self.httpd.accepted += 1
            orig(request, addr)

        self.httpd.process_request = counted
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def seen(self):
        with self.httpd.lock:
            return list(self.httpd.seen)

    def httpd_accepted(self):
        with self.httpd.lock:
            return self.httpd.accepted

    @property
    def sse_sent(self):
        with self.httpd.lock:
            return list(self.httpd.sse_sent)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# client side


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.raw_head = raw_head

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def read_response(f, method="GET", sink=None):
    """Read one response from a binary file object. With `sink`, the body
    goes to sink(bytes) piecewise and Response.body is b""."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed before a response")
    raw = bytearray(line)
    proto, status, *reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = f.readline()
        raw += h
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(int(status), reason[0] if reason else "", headers, b"", bytes(raw))
    body = bytearray()
    out = sink or body.extend
    te = (r.header("Transfer-Encoding") or "").lower()
    if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
        pass
    elif te == "chunked":
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                f.readline()
                break
            out(f.read(size))
            f.readline()
    elif r.header("Content-Length") is not None:
        left = int(r.header("Content-Length"))
        while left:
            d = f.read(min(left, 1 << 20))
            if not d:
                raise EOFError("body cut short")
            out(d)
            left -= len(d)
    else:
        while True:
            d = f.read1(65536) if hasattr(f, "read1") else f.read(65536)
            if not d:
                break
            out(d)
    r.body = bytes(body)
    return r


def request(host, port, method, path, body=b"", headers=(), hosthdr="example"):
    """One request on a fresh connection; returns the Response."""
    s = socket.create_connection((host, port), timeout=H.t(30))
    try:
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, hosthdr)
        for k, v in headers:
            head += "%s: %s\r\n" % (k, v)
        if body or method in ("POST", "PUT"):
            head += "Content-Length: %d\r\n" % len(body)
        s.sendall(head.encode() + b"\r\n" + body)
        return read_response(s.makefile("rb"), method)
    finally:
        s.close()
