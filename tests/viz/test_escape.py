"""Data embedded in the site's JavaScript can never end a script, open a comment or break a line."""

import json

from saekit.viz.browser.escape import clean, html_text, js_data_call, js_literal

NASTY = (
    '</script><!-- <script>alert(1)</script> "><img src=x onerror=alert(1)> & \u2028\u2029 \u00e9 \U0001f600'
)


def test_js_literal_has_no_markup_characters_and_round_trips():
    out = js_literal({"t": NASTY, "list": [NASTY]})
    for bad in ("<", ">", "&", "\u2028", "\u2029", "</script", "<!--"):
        assert bad not in out
    assert out.isascii()
    # the escapes are plain JSON escapes: a JSON parser gets the original text back
    assert json.loads(out) == {"t": NASTY, "list": [NASTY]}


def test_data_call_is_one_ascii_statement():
    out = js_data_call("feature", 7, {"token": NASTY})
    assert out.startswith('saekitData("feature","7",') and out.endswith(");\n")
    assert out.isascii() and "<" not in out and out.count("\n") == 1


def test_clean_turns_non_finite_numbers_into_null():
    assert clean({"a": float("nan"), "b": [float("inf"), 1.5], 3: -float("inf")}) == {
        "a": None,
        "b": [None, 1.5],
        "3": None,
    }
    assert json.loads(js_literal([float("nan")])) == [None]


def test_html_text_escapes_quotes_and_tags():
    assert html_text('"><img src=x>') == "&quot;&gt;&lt;img src=x&gt;"
