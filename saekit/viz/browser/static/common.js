/* saekit feature browser: shared helpers.
 * Data arrives as script files calling saekitData(kind, key, value) (file:// pages may not fetch()).
 * Every string from the analysis is put into the page with textContent or as a DOM property; no
 * data ever passes through innerHTML, so no corpus text can become markup or script. */
"use strict";

var SAEKIT = { store: {}, waiting: {} };

function saekitData(kind, key, value) {
  var id = kind + ":" + key;
  SAEKIT.store[id] = value;
  var w = SAEKIT.waiting[id];
  if (w) { delete SAEKIT.waiting[id]; w.resolve(value); }
}

/* Load data/<file> once; resolves with the value its saekitData call delivered. */
function loadData(kind, key, file) {
  var id = kind + ":" + key;
  if (id in SAEKIT.store) return Promise.resolve(SAEKIT.store[id]);
  if (SAEKIT.waiting[id]) return SAEKIT.waiting[id].promise;
  var w = {};
  w.promise = new Promise(function (resolve, reject) { w.resolve = resolve; w.reject = reject; });
  SAEKIT.waiting[id] = w;
  var s = document.createElement("script");
  s.src = "data/" + file;
  s.onerror = function () {
    delete SAEKIT.waiting[id];
    w.reject(new Error("could not load data/" + file));
  };
  document.head.appendChild(s);
  return w.promise;
}

/* el("div", {className: "x", title: "..."}, [child | "text", ...]): properties, never HTML. */
function el(tag, props, children) {
  var node = document.createElement(tag);
  if (props) {
    Object.keys(props).forEach(function (k) {
      if (k === "dataset") Object.assign(node.dataset, props[k]);
      else node[k] = props[k];
    });
  }
  (children || []).forEach(function (c) {
    if (c === null || c === undefined) return;
    node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  });
  return node;
}

var SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  var node = document.createElementNS(SVGNS, tag);
  Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
  return node;
}

function fmt(x, digits) {
  if (x === null || x === undefined || !isFinite(x)) return "\u2014";
  var d = digits === undefined ? 3 : digits;
  var a = Math.abs(x);
  if (a !== 0 && (a < Math.pow(10, -d) || a >= 1e5)) return x.toExponential(Math.max(1, d - 1));
  return Number(x.toPrecision(d)).toString();
}

function pct(x) {
  if (x === null || x === undefined || !isFinite(x)) return "\u2014";
  if (x === 0) return "0%";
  return fmt(100 * x, 3) + "%";
}

/* A token as visible text: newlines and tabs shown as symbols, spaces kept (CSS pre-wrap). */
function visibleToken(t) {
  return String(t).replace(/\r/g, "\u240d").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
}

function featureHref(id) { return "feature.html?f=" + encodeURIComponent(String(id)); }

function showError(msg) {
  var box = document.getElementById("error");
  if (box) { box.hidden = false; box.textContent = msg; }
}

/* Tiny histogram bars in an <svg>: values 0..100. */
function sparkSvg(values, width, height) {
  var w = width || 80, h = height || 18;
  var s = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, class: "spark" });
  if (!values || !values.length) return s;
  var bw = w / values.length;
  values.forEach(function (v, i) {
    var bh = Math.max(v > 0 ? 1 : 0, (v / 100) * (h - 1));
    s.appendChild(svg("rect", { x: (i * bw).toFixed(2), y: (h - bh).toFixed(2),
      width: Math.max(0.5, bw - 0.6).toFixed(2), height: bh.toFixed(2) }));
  });
  return s;
}
