/* One feature's page: statistics, histogram with quantile buckets, examples from every bucket, top
 * contexts shaded per token, logit effects, synthetic maximisers beside the real max, images,
 * nearest features and the steering command. Data: data/f_<k>.js. */
"use strict";

(function () {
  var meta = SAEKIT.store["meta:0"];
  var BUCKET_COLOURS = ["#dbe7f3", "#b9d2ea", "#8fb7dc", "#5f97c9", "#3a78b5", "#215a98", "#123b6e", "#0a2548"];

  function section(title, note, children) {
    var kids = [el("h2", {}, [title])];
    if (note) kids.push(el("p", { className: "muted note" }, [note]));
    return el("section", { className: "panel" }, kids.concat(children));
  }

  function stat(label, value, title) {
    return el("div", { className: "card", title: title || "" }, [el("div", { className: "value" }, [value]), el("div", { className: "label" }, [label])]);
  }

  /* [{q, v}] from 0 (smallest seen) to 1 (max): the bucket boundaries. */
  function quantileBounds(f) {
    var st = f.stats || {}, h = f.histogram || {}, qs = st.quantiles || {};
    var lo = h.edges && h.edges.length ? h.edges[0] : 0;
    var b = [{ q: 0, v: lo }];
    Object.keys(qs).map(Number).sort(function (a, c) { return a - c; }).forEach(function (q) {
      var v = qs[String(q)];
      if (v !== null && v !== undefined && v > b[b.length - 1].v) b.push({ q: q, v: v });
    });
    if (st.max !== null && st.max !== undefined && st.max > b[b.length - 1].v) b.push({ q: 1, v: st.max });
    return b;
  }

  function bucketOf(bounds, v) {
    for (var i = 1; i < bounds.length; i++) if (v < bounds[i].v) return i - 1;
    return bounds.length - 2;
  }

  function qLabel(q) { return q === 0 ? "min" : q === 1 ? "max" : "p" + fmt(100 * q, 3); }
  function bucketLabel(bounds, i) { return qLabel(bounds[i].q) + "\u2013" + qLabel(bounds[i + 1].q); }

  function histogram(f, bounds) {
    var h = f.histogram || {}, counts = h.counts || [], edges = h.edges || [];
    if (!counts.length) return el("p", { className: "muted" }, ["no histogram in analysis.json"]);
    var W = 760, H = 210, L = 48, B = 34, T = 10, R = 10, pw = W - L - R, ph = H - T - B;
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "hist", role: "img" });
    var top = Math.max.apply(null, counts) || 1, bw = pw / counts.length;
    s.appendChild(svg("line", { x1: L, y1: T + ph, x2: L + pw, y2: T + ph, class: "axis" }));
    counts.forEach(function (c, i) {
      var mid = edges.length > i + 1 ? Math.sqrt(Math.max(edges[i], 1e-30) * edges[i + 1]) : 0;
      var bi = bucketOf(bounds, mid), bh = c ? Math.max(1, (c / top) * ph) : 0;
      var r = svg("rect", { x: (L + i * bw).toFixed(1), y: (T + ph - bh).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: bh.toFixed(1), fill: BUCKET_COLOURS[bi % BUCKET_COLOURS.length], class: "bar" });
      var t = svg("title", {});
      t.textContent = fmt(edges[i]) + "\u2013" + fmt(edges[i + 1]) + ": " + c.toLocaleString("en") + " tokens (" + bucketLabel(bounds, bi) + ")";
      r.appendChild(t); s.appendChild(r);
    });
    var logLo = Math.log(Math.max(edges[0], 1e-30)), logHi = Math.log(edges[edges.length - 1]);
    function xOf(v) { return L + pw * (Math.log(Math.max(v, 1e-30)) - logLo) / ((logHi - logLo) || 1); }
    bounds.slice(1, -1).forEach(function (b) {
      var x = xOf(b.v).toFixed(1);
      s.appendChild(svg("line", { x1: x, y1: T, x2: x, y2: T + ph, class: "qline" }));
      var t = svg("text", { x: x, y: T + ph + 13, class: "qlabel", "text-anchor": "middle" }); t.textContent = qLabel(b.q); s.appendChild(t);
    });
    [[L, "start", edges[0]], [L + pw, "end", edges[edges.length - 1]]].forEach(function (a) {
      var t = svg("text", { x: a[0], y: T + ph + 28, class: "tick", "text-anchor": a[1] }); t.textContent = fmt(a[2]); s.appendChild(t);
    });
    var yl = svg("text", { x: L - 6, y: T + 8, class: "tick", "text-anchor": "end" }); yl.textContent = top.toLocaleString("en"); s.appendChild(yl);
    var xl = svg("text", { x: L + pw / 2, y: T + ph + 28, class: "tick", "text-anchor": "middle" }); xl.textContent = "activation (log scale)"; s.appendChild(xl);
    return s;
  }

  function legend(bounds) {
    var box = el("div", { className: "legend" });
    for (var i = 0; i + 1 < bounds.length; i++) {
      var sw = el("span", { className: "swatch" }); sw.style.backgroundColor = BUCKET_COLOURS[i % BUCKET_COLOURS.length];
      box.appendChild(el("span", { className: "legend-item" }, [sw, bucketLabel(bounds, i) + " (" + fmt(bounds[i].v) + "\u2013" + fmt(bounds[i + 1].v) + ")"]));
    }
    return box;
  }

  function tokenSpan(ctx, i, maxAct) {
    var toks = ctx.tokens || [], a = (ctx.activations || [])[i] || 0;
    var alpha = maxAct > 0 ? Math.min(1, Math.max(0, a / maxAct)) : 0;
    var span = el("span", { className: "tok" + (i === ctx.focus ? " focus" : ""), title: JSON.stringify(String(toks[i])) + "  activation " + fmt(a, 4) }, [visibleToken(toks[i])]);
    span.dataset.act = String(a);
    if (alpha > 0) span.style.backgroundColor = "rgba(230, 110, 20, " + (0.12 + 0.78 * alpha).toFixed(3) + ")";
    return span;
  }

  /* One context, its focus token lined up with the other rows' (text before it right-aligned);
   * tokens shaded by activation / max, the value on hover. */
  function contextCells(ctx, maxAct, opts) {
    var o = opts || {}, n = (ctx.tokens || []).length;
    var from = o.from || 0, to = o.to === undefined ? n : o.to, focus = Math.min(Math.max(ctx.focus || 0, from), to);
    var left = el("span", { className: "ctx" }), right = el("span", { className: "ctx" });
    for (var i = from; i < to; i++) (i < focus ? left : right).appendChild(tokenSpan(ctx, i, maxAct));
    return [el("span", { className: "ctx-left" }, [left]), el("span", { className: "ctx-right" }, [right])];
  }

  function exampleRow(e, maxAct, opts) {
    var ctx = e.context || { tokens: [e.token], activations: [e.activation], focus: 0 };
    var where = [];
    if (e.doc_id !== undefined && e.doc_id !== null) where.push("doc " + e.doc_id);
    if (e.position !== undefined && e.position !== null) where.push("pos " + e.position);
    return el("div", { className: "example" }, [el("span", { className: "act", title: where.join(", ") }, [fmt(e.activation, 3)])].concat(contextCells(ctx, maxAct, opts)));
  }

  /* Image rows have no text: their "contexts" are token ids only (#123), not worth a section. */
  function hasText(f) {
    return (f.top_examples || []).some(function (e) {
      var toks = (e.context || {}).tokens || (e.token === undefined || e.token === null ? [] : [e.token]);
      return toks.some(function (t) { return t !== null && t !== undefined && !/^#\d+$/.test(String(t)); });
    });
  }

  function topContexts(f) {
    var ex = f.top_examples || [], mx = (f.stats || {}).max || (ex[0] || {}).activation || 0;
    if (!ex.length || !hasText(f)) return null;
    return section("Top contexts", "Highest activations; each token shaded by its activation relative to the max (hover for the value).",
      [el("div", { className: "examples", id: "top-contexts" }, ex.map(function (e) { return exampleRow(e, mx); }))]);
  }

  /* Tokens of the top contexts grouped by bucket: a fallback when analysis.json has no bucket samples. */
  function bucketsFromContexts(f, bounds) {
    var seen = {}, out = bounds.slice(1).map(function () { return []; });
    (f.top_examples || []).forEach(function (e) {
      var c = e.context; if (!c) return;
      (c.activations || []).forEach(function (a, i) {
        var key = e.row !== undefined ? e.row - c.focus + i : Math.random();
        if (!(a > 0) || seen[key]) return;
        seen[key] = 1;
        out[bucketOf(bounds, a)].push({ activation: a, context: c, from: Math.max(0, i - 8), to: Math.min(c.tokens.length, i + 4), i: i });
      });
    });
    return out.map(function (list) {
      list.sort(function (a, b) { return b.activation - a.activation; });
      if (list.length <= 3) return list;
      return [list[0], list[Math.floor(list.length / 2)], list[list.length - 1]];
    });
  }

  function bucketBlock(title, colour, rowsEls) {
    var sw = el("span", { className: "swatch" }); sw.style.backgroundColor = colour;
    return el("div", { className: "bucket" }, [el("h3", {}, [sw, title])].concat(rowsEls.length ? rowsEls : [el("p", { className: "muted" }, ["no example in this bucket"])]));
  }

  function bucketExamples(f, bounds) {
    var mx = (f.stats || {}).max || 0, blocks = [];
    if (f.bucket_examples && f.bucket_examples.length) {
      f.bucket_examples.forEach(function (b, i) {
        var title = (b.q_lo !== undefined ? qLabel(b.q_lo) + "\u2013" + qLabel(b.q_hi) + " " : "") + "(" + fmt(b.lo) + "\u2013" + fmt(b.hi) + ")";
        blocks.push(bucketBlock(title, BUCKET_COLOURS[i % BUCKET_COLOURS.length], (b.examples || []).map(function (e) { return exampleRow(e, mx); })));
      });
      return section("Examples from every activation bucket", "Sampled from the whole store, one group per quantile bucket.", [el("div", { className: "buckets", id: "buckets" }, blocks)]);
    }
    if (bounds.length < 2 || !hasText(f)) return null;
    var groups = bucketsFromContexts(f, bounds);
    for (var i = groups.length - 1; i >= 0; i--) {
      blocks.push(bucketBlock(bucketLabel(bounds, i) + " (" + fmt(bounds[i].v) + "\u2013" + fmt(bounds[i + 1].v) + ")", BUCKET_COLOURS[i % BUCKET_COLOURS.length],
        groups[i].map(function (g) { var c = Object.assign({}, g.context, { focus: g.i }); return exampleRow({ activation: g.activation, context: c }, mx, { from: g.from, to: g.to }); })));
    }
    return section("Examples by activation bucket", "analysis.json has no samples per bucket; these are the tokens of the top contexts whose activation falls in each bucket (biased towards the top examples' neighbourhoods).", [el("div", { className: "buckets", id: "buckets" }, blocks)]);
  }

  function effectList(title, items, cls) {
    var mx = Math.max.apply(null, items.map(function (t) { return Math.abs(t.effect || 0); }).concat([1e-12]));
    return el("div", { className: "effects " + cls }, [el("h3", {}, [title])].concat(items.map(function (t) {
      var bar = el("span", { className: "ebar" }); bar.style.width = (100 * Math.abs(t.effect || 0) / mx).toFixed(1) + "%";
      return el("div", { className: "effect" }, [el("span", { className: "etok" }, [visibleToken(t.token)]), el("span", { className: "etrack" }, [bar]), el("span", { className: "eval" }, [fmt(t.effect, 3)])]);
    })));
  }

  function logitEffects(f) {
    var le = f.logit_effects; if (!le) return null;
    return section("Logit effects", le.approximation || "Direct effect of the decoder direction on the output logits.",
      [el("div", { className: "two" }, [effectList("promoted", le.promoted || [], "pos"), effectList("suppressed", le.suppressed || [], "neg")])]);
  }

  function synthetic(f) {
    var sy = f.synthetic; if (!sy || !(sy.sequences || []).length) return null;
    var realMax = sy.real_max !== null && sy.real_max !== undefined ? sy.real_max : (f.stats || {}).max;
    var top = (f.top_examples || [])[0];
    var best = Math.max.apply(null, sy.sequences.map(function (s) { return s.activation || 0; }).concat([realMax || 0, 1e-12]));
    function bar(label, v, cls) {
      var b = el("span", { className: "sbar " + cls }); b.style.width = (100 * Math.max(0, v || 0) / best).toFixed(1) + "%";
      return el("div", { className: "srow" }, [el("span", { className: "slabel" }, [label]), el("span", { className: "strack" }, [b]), el("span", { className: "sval" }, [fmt(v, 3)])]);
    }
    var bars = [bar("real max", realMax, "real")];
    var rnd = (sy.random_activations || []).length ? Math.max.apply(null, sy.random_activations) : null;
    if (rnd !== null) bars.push(bar("random max", rnd, "random"));
    var table = el("table", { className: "synth" }, [el("thead", {}, [el("tr", {}, ["sequence", "activation", "\u00d7 real max", "perplexity"].map(function (h) { return el("th", {}, [h]); }))])]);
    var body = el("tbody");
    sy.sequences.forEach(function (s, i) {
      bars.push(bar("synthetic " + (i + 1), s.activation, "syn"));
      body.appendChild(el("tr", {}, [el("td", { className: "stext" }, [el("span", { className: "chips" }, (s.tokens || [s.text]).map(function (t) { return el("span", { className: "chip" }, [visibleToken(t)]); }))]),
        el("td", { className: "num" }, [fmt(s.activation)]), el("td", { className: "num" }, [s.ratio_to_real_max === null || s.ratio_to_real_max === undefined ? "\u2014" : fmt(s.ratio_to_real_max, 3)]), el("td", { className: "num" }, [fmt(s.perplexity)])]));
    });
    table.appendChild(body);
    var side = [el("h3", {}, ["real max example"]), top ? exampleRow(top, realMax || top.activation) : el("p", { className: "muted" }, ["no real example"])];
    return section("Synthetic maximisers", sy.objective || "", [el("div", { className: "two" }, [el("div", {}, side), el("div", { className: "sbars" }, bars)]), table]);
  }

  function figure(src, caption, cls) {
    var kids = [];
    if (src) kids.push(el("img", { src: src, alt: caption }));
    else kids.push(el("div", { className: "noimg" }, ["image not in the site"]));
    kids.push(el("figcaption", {}, [caption]));
    return el("figure", { className: cls || "" }, kids);
  }

  function images(f) {
    var kids = [];
    if (f.image_grid) kids.push(figure(f.image_grid, "top-image grid (activation, token patch outlined)", "wide"));
    (f.heatmaps || []).forEach(function (h, i) { kids.push(figure(h, "heatmap " + (i + 1), "")); });
    if (f.timestep_plot) kids.push(figure(f.timestep_plot, "activation by denoising timestep", "wide"));
    var tops = (f.top_images || []).map(function (im) {
      var bits = ["act " + fmt(im.activation)];
      if (im["class"] !== undefined && im["class"] !== null) bits.push("class " + String(im["class"]));
      if (im.step !== undefined && im.step !== null) bits.push("step " + im.step);
      if (im.doc_id !== undefined) bits.push("doc " + im.doc_id);
      if (im.position !== undefined && im.position !== null) bits.push("token " + im.position);
      var text = im.caption || im.prompt || (!im.image_src ? im.image || im.source : "");
      if (text) bits.push(String(text));
      return figure(im.image_src, bits.join(" \u00b7 "), "thumb");
    });
    if (!kids.length && !tops.length) return null;
    var parts = [el("div", { className: "figs", id: "images" }, kids)];
    if (tops.length) parts.push(el("h3", {}, ["top images"]), el("div", { className: "thumbs" }, tops));
    return section("Images", null, parts);
  }

  function nearest(f) {
    if (!f.nearest || !f.nearest.length) return section("Nearest features", "Not computed: rebuild with `saekit browse ANALYSIS_DIR --sae SAE_FOLDER` for neighbours by decoder cosine.", []);
    var analysed = {}; meta.analysed.forEach(function (j) { analysed[j] = 1; });
    var list = el("ol", { className: "nearest", id: "nearest" }, f.nearest.map(function (n) {
      var label = "#" + n.feature;
      var link = analysed[n.feature] ? el("a", { href: featureHref(n.feature) }, [label]) : el("span", { className: "muted", title: "not analysed: no page" }, [label]);
      return el("li", {}, [link, el("span", { className: "cos" }, [" cos " + fmt(n.cosine, 3)])]);
    }));
    return section("Nearest features", "By cosine similarity of decoder directions.", [list]);
  }

  function steer(f) {
    var pre = el("pre", { className: "cmd", id: "steer-cmd" }, [f.steer_command]);
    var b = el("button", { type: "button", className: "copy" }, ["copy"]);
    b.addEventListener("click", function () {
      var r = document.createRange(); r.selectNodeContents(pre);
      var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r);
      if (navigator.clipboard) navigator.clipboard.writeText(f.steer_command).then(function () { b.textContent = "copied"; }, function () {});
    });
    return section("Steer with this feature", "Continue a prompt with and without the feature clamped to 4\u00d7 its max (edit the prompt, method and strength).", [el("div", { className: "cmdbox" }, [pre, b])]);
  }

  function nav(id) {
    var a = meta.analysed, i = a.indexOf(id), box = document.getElementById("featnav");
    box.appendChild(el("a", { href: "index.html" }, ["\u2190 all features"]));
    if (i > 0) box.appendChild(el("a", { href: featureHref(a[i - 1]), className: "prev" }, ["\u2039 #" + a[i - 1]]));
    if (i >= 0 && i + 1 < a.length) box.appendChild(el("a", { href: featureHref(a[i + 1]), className: "next" }, ["#" + a[i + 1] + " \u203a"]));
  }

  function topTokenLine(f) {
    var counts = {}, order = [];
    (f.top_examples || []).forEach(function (e) {
      if (e.token === undefined || e.token === null) return;
      var t = String(e.token);
      if (!(t in counts)) { counts[t] = 0; order.push(t); }
      counts[t]++;
    });
    order.sort(function (a, b) { return counts[b] - counts[a]; });
    if (!order.length || !hasText(f)) return null;
    var chips = el("span", { className: "chips" }, order.slice(0, 8).map(function (t) {
      return el("span", { className: "chip", title: counts[t] + " of the top examples" }, [visibleToken(t)]);
    }));
    return el("p", { className: "toptoks" }, [el("span", { className: "muted" }, ["fires most on "]), chips]);
  }

  function render(f) {
    var st = f.stats || {}, bounds = quantileBounds(f), q = st.quantiles || {};
    document.title = "feature " + f.index + " \u00b7 saekit";
    var head = el("div", { className: "fhead" }, [el("h2", { className: "ftitle" }, ["Feature #" + f.index]), topTokenLine(f)]);
    var cards = el("div", { className: "cards" }, [stat("frequency", pct(st.frequency)), stat("count", st.count === undefined ? "\u2014" : Number(st.count).toLocaleString("en")),
      stat("max", fmt(st.max)), stat("mean when active", fmt(st.mean_when_active)), stat("median", fmt(q["0.5"]))]);
    var hist = section("Activation histogram", "Non-zero activations, log-spaced bins, coloured by quantile bucket.", [el("div", { id: "histogram" }, [histogram(f, bounds)]), legend(bounds)]);
    var parts = [head, cards, images(f), hist, topContexts(f), bucketExamples(f, bounds), logitEffects(f), synthetic(f), nearest(f), steer(f)];
    var root = document.getElementById("feature");
    parts.forEach(function (p) { if (p) root.appendChild(p); });
    document.body.dataset.ready = "1";
  }

  if (!meta) { showError("data/meta.js did not load: rebuild the site with `saekit browse`."); return; }
  var src = meta.source || {}, sae = meta.sae || {};
  document.getElementById("subtitle").textContent = [sae.arch, src.model, src.hook_point].filter(Boolean).map(String).join(" \u00b7 ");
  var raw = new URLSearchParams(location.search).get("f");
  if (raw === null || !/^\d+$/.test(raw)) { showError("no feature given: open a feature from the index (feature.html?f=ID)"); return; }
  var id = parseInt(raw, 10);
  nav(id);
  var pos = meta.analysed.indexOf(id);
  if (pos < 0) { showError("feature " + id + " has no page in this site (it was not analysed)"); return; }
  var chunk = Math.floor(pos / meta.feature_chunk);
  loadData("features", chunk, "f_" + chunk + ".js").then(function (part) { render(part[String(id)]); }, function (e) { showError(e.message); });
})();
