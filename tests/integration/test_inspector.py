"""The web inspector (ngrok-compat.md §5): "/" redirects to /inspect/http;
/inspect/http and /status serve the page, whose script must at least parse
and use only the agent API routes that exist."""
import re
import shutil
import subprocess

import pytest

from test_api import call, web_addr


def test_root_redirects_to_inspect(api_addr):
    st, hdrs, _ = call(api_addr, "GET", "/", raw=True)
    assert st == 302
    assert hdrs["Location"] == "/inspect/http"


@pytest.mark.parametrize("path", ["/inspect/http", "/status"])
def test_page_is_served(api_addr, path):
    st, hdrs, body = call(api_addr, "GET", path, headers={"Accept": "text/html"}, raw=True)
    assert st == 200
    assert hdrs["Content-Type"].startswith("text/html")
    assert b"<title>burrow inspector</title>" in body
    assert b"No requests to display yet" in body


@pytest.mark.parametrize("path", ["/", "/inspect/http", "/status"])
def test_pages_refuse_framing(api_addr, path):
    # Replay and Clear Requests are one click away on the page: another
    # site must not be able to frame it and trick a click onto them.
    st, hdrs, _ = call(api_addr, "GET", path, headers={"Accept": "text/html"}, raw=True)
    assert st in (200, 302)
    assert hdrs.get("X-Frame-Options") == "DENY"
    assert hdrs.get("Content-Security-Policy") == "frame-ancestors 'none'"


def test_page_uses_only_existing_api_routes(api_addr, tmp_path):
    _, _, body = call(api_addr, "GET", "/inspect/http", raw=True)
    script = re.search(rb"<script>(.*)</script>", body, re.S).group(1)
    for path in set(re.findall(rb'"(/api/[a-z/]*)', script)):
        st, _, _ = call(api_addr, "GET", path.decode(), raw=True)
        assert st == 200, path
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.skip("node is not installed: cannot syntax-check the page script")
    f = tmp_path / "inspect.js"
    f.write_bytes(script)
    r = subprocess.run([node, "--check", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_post_to_page_is_refused(api_addr):
    st, _, _ = call(api_addr, "POST", "/inspect/http", body=b"x", raw=True)
    assert st == 405


@pytest.fixture
def api_addr(tunnel):
    return web_addr(tunnel.agent)
