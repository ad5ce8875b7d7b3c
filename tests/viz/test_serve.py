"""`--serve`: the site over HTTP on 127.0.0.1 only."""

import threading
import urllib.request

import pytest

from saekit.errors import SaekitError
from saekit.viz.browser import BrowserConfig, build_site
from saekit.viz.browser.serve import make_server

from .fake_analysis import make_analysis_doc


def test_serves_the_site_on_loopback(write_analysis, tmp_path):
    index = build_site(
        write_analysis(make_analysis_doc(3)), BrowserConfig(out=str(tmp_path / "s"), quiet=True)
    )
    server = make_server(index.parent, port=0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.status == 200 and r.read() == index.read_bytes()
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/f_0.js", timeout=10) as r:
            assert r.read().startswith(b'saekitData("features","0",')
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_refuses_a_folder_without_a_site(tmp_path):
    with pytest.raises(SaekitError, match="no index.html"):
        make_server(tmp_path, port=0)
