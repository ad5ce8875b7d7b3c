"""The site in a real browser: headless Chromium driven by Selenium (marker `browser`).

Checks what a person would: the index loads with no console error, search narrows the list, sorting
and paging show the right rows, a feature page shows its histogram and contexts, hostile corpus text
is shown as text and runs nothing, the served site works, and a screenshot is saved.
"""

import os
import threading
import time

import pytest
from PIL import Image

from saekit.viz.browser import BrowserConfig, build_site, payload
from saekit.viz.browser.chromium import full_page_png, wait_ready
from saekit.viz.browser.serve import make_server

from .fake_analysis import EVIL_FEATURE, EVIL_IMG, EVIL_SCRIPT, SEARCH_FEATURE, SEARCH_WORD, make_analysis_doc

pytestmark = pytest.mark.browser
N_BIG = 10_000
By = pytest.importorskip("selenium.webdriver.common.by").By


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 10k-feature analysis (all analysed) and its site."""
    import json

    folder = tmp_path_factory.mktemp("big")
    doc = make_analysis_doc(N_BIG, n_top=3)  # few contexts per feature: the fixture stays cheap
    (folder / "analysis.json").write_text(json.dumps(doc))
    index = build_site(folder, BrowserConfig(out=str(folder / "site"), quiet=True))
    return doc, index


def open_ready(driver, url: str, timeout: float = 60.0) -> float:
    """Load `url` and wait until the page says its data is in (body[data-ready=1]); seconds taken."""
    t0 = time.perf_counter()
    driver.get(url)
    wait_ready(driver, timeout)
    return time.perf_counter() - t0


def errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def shown_ids(driver) -> list[int]:
    return [
        int(r.get_attribute("data-id")) for r in driver.find_elements(By.CSS_SELECTOR, "#rows tr[data-id]")
    ]


def expected_order(doc, key: str, reverse: bool) -> list[int]:
    col = payload.INDEX_COLUMNS.index(key)
    rows = payload.index_rows(doc)
    if reverse:  # descending by value, ties by ascending id (as the page does)
        return [r[0] for r in sorted(rows, key=lambda r: (-r[col], r[0]))]
    return [r[0] for r in sorted(rows, key=lambda r: (r[col], r[0]))]


def click_header(driver, key: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'button.sort[data-key="{key}"]').click()
    wait_ready(driver)


def search(driver, text: str) -> None:
    box = driver.find_element(By.ID, "search")
    box.clear()
    box.send_keys(text)
    time.sleep(0.4)  # the input is debounced (120 ms)
    wait_ready(driver)


def page_info(driver) -> str:
    return driver.find_element(By.ID, "page-info").text


def test_index_of_10k_features_loads_fast_without_errors_and_pages(page, big):
    doc, index = big
    took = open_ready(page, index.as_uri())
    assert errors(page) == []
    assert took < 20, f"index took {took:.1f} s"  # measured ~1-2 s on an idle 2-core machine
    first_paint = page.execute_script(
        "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
    )
    print(f"10k index ready in {took:.2f} s (DOMContentLoaded {first_paint:.0f} ms)")
    assert page.find_elements(By.CSS_SELECTOR, 'button.sort[data-key="ratio"]')  # feature 0 has a synthetic
    want = expected_order(doc, "max", reverse=True)  # default: strongest first
    assert page_info(page) == f"page 1 of {N_BIG // 50} \u00b7 1\u201350 of 10,000"
    assert shown_ids(page) == want[:50]
    page.find_element(By.CSS_SELECTOR, "#pager button.next").click()
    assert shown_ids(page) == want[50:100] and page_info(page).startswith("page 2 of 200")
    page.find_element(By.CSS_SELECTOR, "#pager button.last").click()
    assert shown_ids(page) == want[-50:]
    page.find_element(By.CSS_SELECTOR, "#pager button.first").click()
    assert shown_ids(page) == want[:50]


def test_sorting_by_columns(page, big):
    doc, index = big
    open_ready(page, index.as_uri())
    click_header(page, "id")
    assert shown_ids(page) == list(range(50))
    click_header(page, "id")
    assert shown_ids(page) == list(range(N_BIG - 1, N_BIG - 51, -1))
    click_header(page, "frequency")
    assert shown_ids(page) == expected_order(doc, "frequency", reverse=True)[:50]
    click_header(page, "mean")
    assert shown_ids(page) == expected_order(doc, "mean", reverse=True)[:50]
    click_header(page, "mean")
    assert shown_ids(page) == expected_order(doc, "mean", reverse=False)[:50]
    assert errors(page) == []


def test_search_by_id_and_by_context_text(page, big):
    _, index = big
    open_ready(page, index.as_uri())
    search(page, str(SEARCH_FEATURE))
    assert shown_ids(page) == [SEARCH_FEATURE]
    page.find_element(By.CSS_SELECTOR, "#rows a.fid").click()  # to its page and back: same view
    wait_ready(page)
    assert page.find_element(By.CSS_SELECTOR, "h2.ftitle").text == f"Feature #{SEARCH_FEATURE}"
    page.back()
    wait_ready(page)
    assert shown_ids(page) == [SEARCH_FEATURE]
    assert page.find_element(By.ID, "search").get_attribute("value") == str(SEARCH_FEATURE)
    search(page, "42")  # an id prefix: 42, 420-429, 4200-4299
    assert page_info(page).endswith("of 111") and all(str(i).startswith("42") for i in shown_ids(page))
    search(page, SEARCH_WORD.upper())  # text that occurs in exactly one feature's contexts (any case)
    assert shown_ids(page) == [SEARCH_FEATURE]
    search(page, "no such text anywhere")
    assert shown_ids(page) == [] and "no feature matches" in page.find_element(By.ID, "rows").text
    assert errors(page) == []


def test_feature_page_shows_histogram_contexts_and_steer_command(page, big):
    doc, index = big
    f = doc["features"]["3"]
    open_ready(page, index.parent.joinpath("feature.html").as_uri() + "?f=3")
    assert errors(page) == []
    assert page.find_element(By.CSS_SELECTOR, "h2.ftitle").text == "Feature #3"
    bars = page.find_elements(By.CSS_SELECTOR, "#histogram svg rect.bar")
    assert len(bars) == len(f["histogram"]["counts"])
    heights = [float(b.get_attribute("height")) for b in bars]
    top = max(f["histogram"]["counts"])
    for h, c in zip(heights, f["histogram"]["counts"]):
        assert (h == 0) == (c == 0) and (c != top or h == max(heights))
    quantile_lines = page.find_elements(By.CSS_SELECTOR, "#histogram svg line.qline")
    assert len(quantile_lines) >= 3
    rows = page.find_elements(By.CSS_SELECTOR, "#top-contexts .example")
    assert len(rows) == len(f["top_examples"])
    ex = f["top_examples"][0]
    tokens = rows[0].find_elements(By.CSS_SELECTOR, ".tok")
    assert [t.get_attribute("textContent") for t in tokens] == [shown(t) for t in ex["context"]["tokens"]]
    focus = rows[0].find_element(By.CSS_SELECTOR, ".tok.focus")
    assert float(focus.get_attribute("data-act")) == pytest.approx(ex["activation"])
    assert "activation" in focus.get_attribute("title")  # the value on hover
    assert focus.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"  # shaded
    assert len(page.find_elements(By.CSS_SELECTOR, ".bucket")) >= 3
    cmd = page.find_element(By.ID, "steer-cmd").text
    assert cmd == payload.steer_command(doc, 3)
    links = page.find_elements(By.CSS_SELECTOR, "#nearest a")  # from analysis.json's `nearest`
    assert [a.text for a in links] == ["#5", "#6"]
    links[0].click()
    wait_ready(page)
    assert page.find_element(By.CSS_SELECTOR, "h2.ftitle").text == "Feature #5"
    assert errors(page) == []


def test_bucket_examples_are_shown_when_the_analysis_has_them(page, big):
    _, index = big
    open_ready(page, index.parent.joinpath("feature.html").as_uri() + "?f=1")
    buckets = page.find_elements(By.CSS_SELECTOR, "#buckets .bucket")
    assert len(buckets) == 2
    assert "lowbucketword" in buckets[0].text and "highbucketword" in buckets[1].text
    assert buckets[0].find_element(By.TAG_NAME, "h3").text.startswith("min\u2013p50")


def test_analyze_real_bucket_examples_and_nearest_on_the_feature_page(page, tmp_path):
    """The real pipeline (`analyze real --html` on a tiny store) -> the page shows analysis.json's
    bucket examples (one block per bucket, its examples with their values) and nearest-feature links."""
    import json

    from saekit.commands.analyze import main as analyze_main
    from saekit.sae import SAEConfig, build

    from .test_analyze_html import _store

    store = _store(tmp_path / "store")
    sae_dir = build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3), seed=0).save(tmp_path / "sae")
    out = tmp_path / "analysis"
    argv = ["real", "--sae", str(sae_dir), "--store", str(store), "--out", str(out), "--features", "top:2"]
    argv += ["--no-model", "--no-plots", "--quiet", "--html", "--bucket-pool", "400", "--n-nearest", "3"]
    assert analyze_main(argv) == 0
    doc = json.loads((out / "analysis.json").read_text())
    k, f = next(iter(doc["features"].items()))
    open_ready(page, (out / "browser" / "feature.html").as_uri() + f"?f={k}")
    assert errors(page) == []
    blocks = page.find_elements(By.CSS_SELECTOR, "#buckets .bucket")
    assert len(blocks) == len(f["bucket_examples"]) >= 3
    for el, b in zip(blocks, f["bucket_examples"]):
        acts = [float(a.text) for a in el.find_elements(By.CSS_SELECTOR, ".example .act")]
        assert acts == pytest.approx([e["activation"] for e in b["examples"]], rel=1e-2, abs=1e-3)
    items = page.find_elements(By.CSS_SELECTOR, "#nearest li")
    assert [li.text.split()[0] for li in items] == [f"#{n['feature']}" for n in f["nearest"]]
    links = page.find_elements(By.CSS_SELECTOR, "#nearest a")  # analysed neighbours are links
    analysed = {int(j) for j in doc["features"]}
    assert [a.text for a in links] == [f"#{n['feature']}" for n in f["nearest"] if n["feature"] in analysed]


def shown(t: str) -> str:
    """What the page shows for a token: newlines as a visible symbol, spaces kept."""
    return t.replace("\n", "\u21b5")


def test_hostile_corpus_text_is_shown_as_text_and_runs_nothing(page, big):
    doc, index = big
    open_ready(page, index.parent.joinpath("feature.html").as_uri() + f"?f={EVIL_FEATURE}")
    body = page.find_element(By.TAG_NAME, "body").text
    assert EVIL_SCRIPT in body and EVIL_IMG in body  # visible, as text
    assert EVIL_IMG in page.find_element(By.ID, "buckets").text  # in a bucket example too
    assert page.execute_script("return window.__dialogs") == 0  # nothing called alert()
    assert page.find_elements(By.CSS_SELECTOR, "img") == []  # no <img> was made from the text
    srcs = page.execute_script("return Array.from(document.scripts).map(s => s.getAttribute('src'))")
    assert all(s and s.startswith(("assets/", "data/")) for s in srcs), srcs  # no script from data
    open_ready(page, index.as_uri())
    search(page, "onerror")
    assert shown_ids(page) == [EVIL_FEATURE]
    assert page.execute_script("return window.__dialogs") == 0
    assert errors(page) == []


def test_no_real_dialog_opens_without_the_trap(chrome, big):
    """The same page with the browser's own alert(): no dialog is open afterwards."""
    from selenium.common.exceptions import NoAlertPresentException

    _, index = big
    open_ready(chrome, index.parent.joinpath("feature.html").as_uri() + f"?f={EVIL_FEATURE}")
    time.sleep(0.5)
    with pytest.raises(NoAlertPresentException):
        chrome.switch_to.alert.text  # noqa: B018 - the property access is the check


def test_screenshot_is_saved(page, big, tmp_path):
    _, index = big
    open_ready(page, index.parent.joinpath("feature.html").as_uri() + "?f=0")
    out = os.environ.get("SAEKIT_SCREENSHOT_DIR") or str(tmp_path)
    path = os.path.join(out, "browser_feature_test.png")
    full_page_png(page, path)
    with Image.open(path) as im:
        assert im.width >= 1000 and im.height > 1200  # the whole page, not just the window
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 100  # rendered content, not blank


def test_served_site_over_http(page, big):
    _, index = big
    server = make_server(index.parent, port=0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        open_ready(page, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert len(shown_ids(page)) == 50 and errors(page) == []
        page.find_element(By.CSS_SELECTOR, "#rows tr a.fid").click()
        wait_ready(page)
        assert page.find_element(By.CSS_SELECTOR, "h2.ftitle").text.startswith("Feature #")
        assert errors(page) == []
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_image_feature_page_shows_the_images(page, tmp_path, write_analysis):
    import json

    doc = make_analysis_doc(6)
    del doc["features"]["0"]["synthetic"], doc["features"]["0"]["comparison"]
    folder = write_analysis(doc)
    Image.new("RGB", (64, 32), (20, 120, 200)).save(folder / "grid.png")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(folder / "heat.png")
    doc["features"]["1"].update(
        image_grid="grid.png",
        heatmaps=["heat.png"],
        timestep_plot="grid.png",
        top_images=[
            {"doc_id": 3, "activation": 4.5, "image": "heat.png", "position": 2, "caption": EVIL_IMG},
            {"doc_id": 4, "activation": 4.0, "image": "skimage:astronaut", "position": 0},
        ],
    )
    (folder / "analysis.json").write_text(json.dumps(doc))
    index = build_site(folder, BrowserConfig(out=str(tmp_path / "site"), quiet=True))
    open_ready(page, index.parent.joinpath("feature.html").as_uri() + "?f=1")
    imgs = page.find_elements(By.CSS_SELECTOR, "#feature img")
    assert len(imgs) == 5  # grid, heatmap, timestep plot, two top images (a file, a skimage sample)
    sizes = [
        page.execute_script("return [arguments[0].naturalWidth, arguments[0].complete]", i) for i in imgs
    ]
    assert all(w > 0 and done for w, done in sizes), sizes
    assert EVIL_IMG in page.find_element(By.TAG_NAME, "body").text
    assert sizes[-1][0] == 512  # the skimage sample itself (astronaut is 512 x 512), not its name
    assert "skimage:astronaut" not in page.find_element(By.TAG_NAME, "body").text
    assert page.execute_script("return window.__dialogs") == 0 and errors(page) == []
    open_ready(page, index.as_uri())  # no feature has a synthetic result: no empty column for it
    keys = [b.get_attribute("data-key") for b in page.find_elements(By.CSS_SELECTOR, "button.sort")]
    assert keys == ["id", "frequency", "count", "max", "mean", "tokens"]
    assert len(page.find_elements(By.CSS_SELECTOR, "#rows tr:first-child td")) == 7
