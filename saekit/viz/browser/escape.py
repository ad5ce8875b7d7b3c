"""Turning analysis data into JavaScript that is safe to load in a page.

Corpus tokens, captions and prompts are untrusted text. The browser's data files are JavaScript
(`saekitData("feature", 12, {...});`) because pages opened from disk (file://) may not fetch() JSON.
Every value is serialised as JSON with `<`, `>`, `&` and all non-ASCII (so U+2028/U+2029 too) written
as `\\uXXXX` escapes: the output can never close a `<script>` element or open an HTML comment, and
it parses the same in every JavaScript engine. The pages then put strings into the DOM with
`textContent` only, so no string is ever parsed as HTML.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

_JS_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def clean(obj: Any) -> Any:
    """A copy of a JSON-like value with NaN/inf floats replaced by None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def js_literal(obj: Any) -> str:
    """A JavaScript expression for `obj` that contains no `<`, `>`, `&` and only ASCII characters."""
    try:
        text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN/inf somewhere: clean (slower, so only when needed) and retry
        text = json.dumps(clean(obj), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for raw, esc in _JS_UNSAFE.items():
        text = text.replace(raw, esc)
    return text


def js_data_call(kind: str, key: str | int, value: Any) -> str:
    """One data file's whole text: a call that hands `value` to the page (see static/common.js)."""
    return f"saekitData({js_literal(kind)},{js_literal(str(key))},{js_literal(value)});\n"


def html_text(text: str) -> str:
    """Escape text for an HTML text node or a quoted attribute value."""
    return html.escape(str(text), quote=True)
