/* The index: every feature with its statistics; search, sort, pages. Rows arrive in chunks
 * (data/index_<k>.js) and the table renders as soon as the first one is in. Text search loads the
 * context text (data/text_<k>.js) only when a non-numeric query is typed. */
"use strict";

(function () {
  var meta = SAEKIT.store["meta:0"];
  var rows = [];            // [id, frequency, max, mean, analysed, spark, tokens, ratio, count]
  var texts = {};           // id -> lower-cased context text
  var textState = "none";   // none | loading | ready
  var view = [];            // filtered + sorted rows
  var state = { q: "", sort: "max", dir: -1, page: 0, size: 50, analysed: true };
  var C = { id: 0, frequency: 1, max: 2, mean: 3, analysed: 4, spark: 5, tokens: 6, ratio: 7, count: 8 };
  var COLUMNS = [
    { key: "id", label: "feature", num: true },
    { key: "frequency", label: "frequency", num: true, title: "fraction of tokens on which it fires" },
    { key: "count", label: "count", num: true, title: "tokens on which it fires" },
    { key: "max", label: "max", num: true, title: "largest activation" },
    { key: "mean", label: "mean when active", num: true },
    { key: "spark", label: "histogram", sortable: false, title: "distribution of activations when active (log-spaced bins)" },
    { key: "tokens", label: "top tokens", num: false, title: "most frequent tokens among the top examples" },
    { key: "ratio", label: "synthetic / real max", num: true }
  ];

  if (!meta) { showError("data/meta.js did not load: rebuild the site with `saekit browse`."); return; }

  function readHash() {
    var h = new URLSearchParams(location.hash.slice(1));
    if (h.has("q")) state.q = h.get("q");
    if (h.has("sort") && C[h.get("sort")] !== undefined) state.sort = h.get("sort");
    if (h.has("dir")) state.dir = h.get("dir") === "1" ? 1 : -1;
    if (h.has("page")) state.page = Math.max(0, parseInt(h.get("page"), 10) || 0);
    if (h.has("size")) state.size = Math.min(500, Math.max(5, parseInt(h.get("size"), 10) || 50));
    if (h.has("all")) state.analysed = h.get("all") !== "1";
  }

  function writeHash() {
    var h = new URLSearchParams();
    if (state.q) h.set("q", state.q);
    h.set("sort", state.sort); h.set("dir", String(state.dir)); h.set("page", String(state.page));
    h.set("size", String(state.size)); if (!state.analysed) h.set("all", "1");
    history.replaceState(null, "", "#" + h.toString());
  }

  function summary() {
    var s = meta.summary || {}, sae = meta.sae || {}, src = meta.source || {};
    var bits = [];
    if (sae.arch) bits.push(sae.arch + (sae.k ? " k=" + sae.k : ""));
    if (sae.d_in) bits.push(sae.d_in + " \u2192 " + sae.d_sae);
    if (src.model) bits.push(String(src.model));
    if (src.hook_point) bits.push(String(src.hook_point));
    document.getElementById("subtitle").textContent = bits.join(" \u00b7 ");
    var cards = [
      ["tokens analysed", s.n_rows !== undefined ? Number(s.n_rows).toLocaleString("en") : "\u2014"],
      ["features", s.n_features !== undefined ? Number(s.n_features).toLocaleString("en") : String(meta.n_index_rows)],
      ["never fired", s.n_dead !== undefined ? Number(s.n_dead).toLocaleString("en") : "\u2014"],
      ["with pages", Number(meta.analysed.length).toLocaleString("en")]
    ];
    var box = document.getElementById("summary");
    cards.forEach(function (c) {
      box.appendChild(el("div", { className: "card" }, [el("div", { className: "value" }, [c[1]]), el("div", { className: "label" }, [c[0]])]));
    });
  }

  /* Columns no feature has data for (e.g. synthetic/real before the maximiser ran) are left out. */
  function shownColumns() {
    var hasRatio = rows.some(function (r) { return r[C.ratio] !== null && r[C.ratio] !== undefined; });
    return COLUMNS.filter(function (col) { return col.key !== "ratio" || hasRatio; });
  }

  function header() {
    var tr = document.getElementById("header-row");
    tr.textContent = "";
    shownColumns().forEach(function (col) {
      var th = el("th", { className: col.num ? "num" : "" });
      if (col.sortable === false) {
        th.appendChild(el("span", { title: col.title || "" }, [col.label]));
      } else {
        var active = state.sort === col.key;
        th.setAttribute("aria-sort", active ? (state.dir > 0 ? "ascending" : "descending") : "none");
        var b = el("button", { type: "button", className: "sort" + (active ? " active" : ""), title: col.title || ("sort by " + col.label) },
          [col.label + (active ? (state.dir > 0 ? " \u25b2" : " \u25bc") : "")]);
        b.dataset.key = col.key;
        b.addEventListener("click", function () {
          if (state.sort === col.key) state.dir = -state.dir;
          else { state.sort = col.key; state.dir = col.key === "id" || col.key === "tokens" ? 1 : -1; }
          state.page = 0; refresh();
        });
        th.appendChild(b);
      }
      tr.appendChild(th);
    });
  }

  function textQuery() { return state.q.trim() !== "" && !/^#?\d+$/.test(state.q.trim()); }

  function matches(r, q) {
    if (!q) return true;
    var idq = q.replace(/^#/, "");
    if (/^\d+$/.test(idq)) return String(r[C.id]).indexOf(idq) === 0;
    if (r[C.tokens].some(function (t) { return String(t).toLowerCase().indexOf(q) >= 0; })) return true;
    var t = texts[r[C.id]];
    return t !== undefined && t.indexOf(q) >= 0;
  }

  function sortValue(r) {
    var v = r[C[state.sort]];
    if (state.sort === "tokens") return v.length ? String(v[0]).toLowerCase() : null;
    return v;
  }

  function compute() {
    var q = state.q.trim().toLowerCase();
    view = rows.filter(function (r) { return (!state.analysed || r[C.analysed]) && matches(r, q); });
    var dir = state.dir;
    view.sort(function (a, b) {
      var x = sortValue(a), y = sortValue(b);
      if (x === y) return a[C.id] - b[C.id];
      if (x === null || x === undefined) return 1;   // missing values last in both directions
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * dir;
    });
  }

  function tokenChips(tokens) {
    var span = el("span", { className: "chips" });
    tokens.forEach(function (t) { span.appendChild(el("span", { className: "chip" }, [visibleToken(t)])); });
    return span;
  }

  function renderRow(r) {
    var id = r[C.id];
    var idCell = r[C.analysed] ? el("a", { href: featureHref(id), className: "fid" }, ["#" + id]) : el("span", { className: "fid muted", title: "not analysed: no page" }, ["#" + id]);
    var tr = el("tr", { className: r[C.analysed] ? "" : "unanalysed" }, [
      el("td", { className: "num" }, [idCell]),
      el("td", { className: "num" }, [pct(r[C.frequency])]),
      el("td", { className: "num" }, [r[C.count] === null || r[C.count] === undefined ? "\u2014" : Number(r[C.count]).toLocaleString("en")]),
      el("td", { className: "num" }, [fmt(r[C.max])]),
      el("td", { className: "num" }, [fmt(r[C.mean])]),
      el("td", {}, [r[C.spark] ? sparkSvg(r[C.spark]) : el("span", { className: "muted" }, ["\u2014"])]),
      el("td", {}, [tokenChips(r[C.tokens])])
    ]);
    if (showRatio) tr.appendChild(el("td", { className: "num" }, [r[C.ratio] === null || r[C.ratio] === undefined ? "\u2014" : fmt(r[C.ratio], 3) + "\u00d7"]));
    tr.dataset.id = String(id);
    return tr;
  }

  function pagerButton(label, page, disabled, cls) {
    var b = el("button", { type: "button", disabled: !!disabled, className: cls || "" }, [label]);
    b.addEventListener("click", function () { state.page = page; render(); });
    return b;
  }

  function render() {
    var n = view.length, pages = Math.max(1, Math.ceil(n / state.size));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * state.size, end = Math.min(n, start + state.size);
    var body = document.getElementById("rows");
    body.textContent = "";
    var frag = document.createDocumentFragment();
    for (var i = start; i < end; i++) frag.appendChild(renderRow(view[i]));
    body.appendChild(frag);
    if (!n) body.appendChild(el("tr", {}, [el("td", { colSpan: shownColumns().length, className: "muted empty" }, ["no feature matches"])]));
    var pager = document.getElementById("pager");
    pager.textContent = "";
    pager.appendChild(pagerButton("\u00ab first", 0, state.page === 0, "first"));
    pager.appendChild(pagerButton("\u2039 prev", state.page - 1, state.page === 0, "prev"));
    pager.appendChild(el("span", { id: "page-info" }, ["page " + (state.page + 1) + " of " + pages + " \u00b7 " + (n ? (start + 1) + "\u2013" + end : "0") + " of " + n.toLocaleString("en")]));
    pager.appendChild(pagerButton("next \u203a", state.page + 1, state.page >= pages - 1, "next"));
    pager.appendChild(pagerButton("last \u00bb", pages - 1, state.page >= pages - 1, "last"));
    var st = rows.length < meta.n_index_rows ? "loading " + rows.length + " of " + meta.n_index_rows + " features\u2026" : "";
    if (textQuery() && textState === "loading") st = (st ? st + " " : "") + "loading context text for search\u2026";
    document.getElementById("status").textContent = st;
    document.body.dataset.ready = rows.length >= meta.n_index_rows && (!textQuery() || textState === "ready") ? "1" : "0";
    writeHash();
  }

  var showRatio = false;
  function refresh() { showRatio = shownColumns().length === COLUMNS.length; header(); compute(); render(); }

  function loadTexts() {
    if (textState !== "none") return;
    textState = "loading";
    var n = Math.ceil(meta.analysed.length / meta.text_chunk), chain = Promise.resolve();
    for (var k = 0; k < n; k++) {
      (function (k) {
        chain = chain.then(function () { return loadData("text", k, "text_" + k + ".js"); })
          .then(function (t) { Object.assign(texts, t); if (textQuery()) { compute(); render(); } });
      })(k);
    }
    chain.then(function () { textState = "ready"; compute(); render(); }, function (e) { showError(e.message); });
  }

  function onSearch() {
    state.q = document.getElementById("search").value;
    state.page = 0;
    if (textQuery()) loadTexts();
    compute(); render();
  }

  function wire() {
    var search = document.getElementById("search"), timer = null;
    search.value = state.q;
    search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(onSearch, 120); });
    var only = document.getElementById("analysed-only");
    only.checked = state.analysed;
    only.addEventListener("change", function () { state.analysed = only.checked; state.page = 0; refresh(); });
    var size = document.getElementById("page-size");
    size.value = String(state.size);
    if (size.value !== String(state.size)) size.appendChild(el("option", { value: String(state.size), selected: true }, [String(state.size)]));
    size.addEventListener("change", function () { state.size = parseInt(size.value, 10); state.page = 0; render(); });
  }

  function loadChunks() {
    var n = Math.ceil(meta.n_index_rows / meta.index_chunk), chain = Promise.resolve();
    for (var k = 0; k < n; k++) {
      (function (k) {
        chain = chain.then(function () { return loadData("index", k, "index_" + k + ".js"); })
          .then(function (part) { Array.prototype.push.apply(rows, part); refresh(); });
      })(k);
    }
    if (!n) refresh();
    chain.catch(function (e) { showError(e.message); });
  }

  readHash();
  if (!meta.analysed.length) state.analysed = false;
  summary(); wire();
  if (textQuery()) loadTexts();
  loadChunks();
})();
