"""Serve a built site on localhost (for large sites; small ones open from disk with file://)."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from saekit.errors import SaekitError


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files only, with headers that repeat the pages' own policy."""

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def make_server(site_dir: str | Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for `site_dir` bound to 127.0.0.1 only (`port` 0: any free port)."""
    site = Path(site_dir)
    if not (site / "index.html").is_file():
        raise SaekitError(f"{site} has no index.html; build it first with `saekit browse ANALYSIS_DIR`")
    handler = functools.partial(_Handler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise SaekitError(f"cannot listen on 127.0.0.1:{port} ({exc}); pass another --port") from None
