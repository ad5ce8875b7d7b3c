"""Hook points, capture and intervention: the only place in saekit that touches torch hooks."""

from saekit.hooks.capture import Capture, StopForward, as_hook_points, capture
from saekit.hooks.hookpoint import HookPoint
from saekit.hooks.intervene import intervene
from saekit.hooks.resolve import resolve_module
from saekit.hooks.streams import InputSel, StreamSel, describe, resolve_input_stream, resolve_stream

__all__ = [
    "Capture",
    "HookPoint",
    "InputSel",
    "StopForward",
    "StreamSel",
    "as_hook_points",
    "capture",
    "describe",
    "intervene",
    "resolve_input_stream",
    "resolve_module",
    "resolve_stream",
]
