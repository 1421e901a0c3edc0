"""Helpers for the edge's http/https listener tests: an agent started from
a config file with the test-only raw http plugins (tests/httpraw),
a local HTTP server that reports exactly what reached it, and a raw-socket
HTTP client."""

import hashlib
import os
import socket
import threading

import helpers as H

PLUGIN_DIR = os.path.join(H.BUILD_DIR, "tests", "httpraw")
DOMAIN = "burrow.test"


class ConfigAgent(H.Proc):
    """burrow start --all with a config file of tunnels (dict name -> def)."""

    def __init__(self, home, server_addr, ca, tunnels, name="burrow", authtoken="test-token"):
        import json
        os.makedirs(home, exist_ok=True)
        cfg = os.path.join(home, "burrow.yml")
        lines = ['version: "2"', "authtoken: " + authtoken, "tunnels:" + ("" if tunnels else " {}")]
        for tname, d in tunnels.items():
            lines.append("  %s:" % tname)
            for k, v in d.items():
                lines.append("    %s: %s" % (k, json.dumps(v)))
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.web_port = H.free_port()
        argv = [H.BURROW, "start", "--all" if tunnels else "--none", "--config", cfg, "--server-addr", server_addr,
                "--root-cas", ca, "--log", "stdout", "--log-level", "debug",
                "--web-addr", "127.0.0.1:%d" % self.web_port]
        env = {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
               "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
               "BURROW_PLUGIN_PATH": PLUGIN_DIR}
        super().__init__(argv, name, cwd=home, env=env)

    def urls(self, names, timeout=15, since=0):
        """Wait for `started tunnel` of each name; returns {name: url}."""
        out = {}
        for n in names:
            _, rec = self.wait_log("started tunnel", timeout, since=since, name=n, url=None)
            out[n] = rec["url"]
        return out


def url_host(url):
    rest = url.split("://", 1)[1]
    return rest.rsplit(":", 1)[0] if rest.count(":") else rest


# --------------------------------------------------------------------------
# the local service


def read_head(conn, buf):
    """Read until the end of a head; returns (head, rest) or (None, buf) at EOF."""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def _read_more(conn, buf, need):
    while len(buf) < need:
        d = conn.recv(1 << 20)
        if not d:
            raise EOFError("body cut short")
        buf += d
    return buf


def read_body(conn, head, buf, sink):
    """Pass the raw body bytes (framing included) to sink; returns the rest."""
    low = head.lower()
    if b"transfer-encoding: chunked" in low:
        while True:
            while b"\r\n" not in buf:
                buf = _read_more(conn, buf, len(buf) + 1)
            i = buf.index(b"\r\n") + 2
            size = int(buf[:i].split(b";")[0].strip(), 16)
            need = i + size + 2
            buf = _read_more(conn, buf, need)
            if size == 0:
                # trailer fields, then the empty line
                while b"\r\n\r\n" not in buf[i - 2:]:
                    buf = _read_more(conn, buf, len(buf) + 1)
                end = buf.index(b"\r\n\r\n", i - 2) + 4
                sink(buf[:end])
                return buf[end:]
            sink(buf[:need])
            buf = buf[need:]
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
    while n > 0:
        if not buf:
            buf = conn.recv(1 << 20)
            if not buf:
                raise EOFError("body cut short")
        take = buf[:n]
        sink(take)
        n -= len(take)
        buf = buf[len(take):]
    return buf


class EchoHeadServer(H._Server):
    """Answers every request with its head as received, then a line with the
    sha256 and length of the raw body. Keeps connections alive."""

    def __init__(self):
        self.heads = []
        super().__init__()

    def handle(self, conn):
        buf = b""
        while True:
            head, buf = read_head(conn, buf)
            if head is None:
                return
            self.heads.append(head)
            h, count = hashlib.sha256(), [0]

            def sink(b):
                h.update(b)
                count[0] += len(b)

            buf = read_body(conn, head, buf, sink)
            body = head + b"--\n%s %d\n" % (h.hexdigest().encode(), count[0])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


class UpgradeServer(H._Server):
    """Answers 101 to the first request, then echoes raw bytes."""

    def handle(self, conn):
        head, buf = read_head(conn, b"")
        if head is None:
            return
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                     b"Connection: Upgrade\r\n\r\n" + buf)
        while True:
            d = conn.recv(65536)
            if not d:
                return
            conn.sendall(d)


# --------------------------------------------------------------------------
# the client


class Client:
    """A raw HTTP/1.1 client connection that keeps what it read ahead."""

    def __init__(self, port, timeout=10, sock=None):
        self.sock = sock or H.connect(port, timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def request(self, host, path="/", method="GET", headers=(), body=None):
        req = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(),
                                                   host.encode())
        for k, v in headers:
            req += b"%s: %s\r\n" % (k.encode(), v.encode())
        if body is not None:
            req += b"Content-Length: %d\r\n" % len(body)
        self.send(req + b"\r\n" + (body or b""))

    def response(self):
        """(status, headers dict lowercased, body) of one Content-Length response."""
        head, self.buf = read_head(self.sock, self.buf)
        assert head is not None, "connection closed before a response"
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        self.buf = _read_more(self.sock, self.buf, n)
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def closed(self, timeout):
        """How the edge ended the connection: "eof", "reset" or "timeout"."""
        how, _, _ = H.recv_until_close(self.sock, timeout)
        return how

    def close(self):
        self.sock.close()


def parse_echo(body):
    """The head the local server saw, and (sha256, length) of the body."""
    head, tail = body.rsplit(b"--\n", 1)
    digest, n = tail.split()
    return head, digest.decode(), int(n)


def send_body_in_chunks(sock, total, seed=1):
    """Send `total` pseudo-random bytes; returns their sha256."""
    h = hashlib.sha256()
    sent = 0
    while sent < total:
        block = H.pattern_block(seed + sent, min(1 << 20, total - sent))
        h.update(block)
        sock.sendall(block)
        sent += len(block)
    return h.hexdigest()




def has_line(head, line):
    return line in head.split(b"\r\n")


class BigResponseServer(H._Server):
    """Answers every request with `size` pattern bytes."""

    def __init__(self, size):
        self.size = size
        super().__init__()

    def handle(self, conn):
        head, _ = read_head(conn, b"")
        if head is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
        sent = 0
        while sent < self.size:
            block = H.pattern_block(7 + sent, min(1 << 20, self.size - sent))
            conn.sendall(block)
            sent += len(block)
