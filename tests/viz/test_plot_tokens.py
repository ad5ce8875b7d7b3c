"""Token text in the PNG reports: every character either drawn by the font or written as its code point."""

import warnings

import matplotlib.pyplot as plt

from saekit.viz.analysis_plots import TOKEN_FONT, show_token


def _draw_warnings(text: str) -> list[str]:
    fig, ax = plt.subplots()
    ax.text(0, 0, text, family=TOKEN_FONT, parse_math=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    plt.close(fig)
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_characters_the_font_lacks_become_code_points_and_draw_without_warnings():
    raw = "a\uff1ab 日本 é\n"
    assert _draw_warnings(raw)  # the raw token really has glyphs the font lacks (else the test is void)
    shown = show_token(raw, limit=100)
    assert shown == "aU+FF1Ab·U+65E5U+672C·é⏎"
    assert _draw_warnings(shown) == []
