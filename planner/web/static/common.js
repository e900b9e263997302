/* Shared helpers of the planner's pages: JSON API calls, safe DOM building, the live event stream.
   Plain JavaScript, no build step. Data is always put into the page as text, never as markup. */
"use strict";

var Cosmo = (function () {
  /** Build an element: el("td", {class: "x"}, "text", childNode, ...). Strings become text nodes. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else if (key.indexOf("on") === 0) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  /** Replace the rows of a table's body. */
  function fillTable(table, rows) {
    var body = table.tBodies[0];
    body.replaceChildren.apply(body, rows);
  }

  /** An error raised by api(): the HTTP status and the planner's message. */
  function ApiError(status, message, detail) {
    this.status = status;
    this.message = message;
    this.detail = detail;
  }

  var TOKEN_KEY = "cosmolocal-requester-token";

  /** The requester token this browser remembers ("" when none). */
  function requesterToken() {
    try { return window.localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  /** Remember (or, with "", forget) the requester token. */
  function rememberToken(token) {
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token is asked for again next time */ }
  }

  /** Call the JSON API; resolves with the decoded body, rejects with an ApiError.
      The remembered requester token goes with every call that does not carry its own. */
  function api(path, options) {
    options = options || {};
    var headers = Object.assign({"Accept": "application/json"}, options.headers || {});
    if (!headers.Authorization && requesterToken()) headers.Authorization = "Bearer " + requesterToken();
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: options.method || "GET",
      headers: headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    }).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
        if (response.ok) return data;
        var detail = data && data.detail !== undefined ? data.detail : data;
        var message = typeof detail === "string" ? detail
          : Array.isArray(detail) ? detail.map(function (d) { return d.msg; }).join("; ")
          : "the planner answered " + response.status;
        throw new ApiError(response.status, message, detail);
      });
    }, function () {
      throw new ApiError(0, "the planner cannot be reached; check the connection and retry", null);
    });
  }

  var EVENT_KINDS = ["order.created", "order.state", "job.assigned", "job.accepted", "job.refused",
    "job.running", "job.done", "job.failed", "plan.committed", "plan.rejected", "lab.joined",
    "lab.lost", "trail.changed"];

  /** Follow a server-sent event stream (`path`: /network/events, /orders/ID/events...);
      `handle(kind, data)` is called for each event. The browser resumes after the last event id
      by itself when the connection drops. */
  function live(handle, path) {
    var state = document.getElementById("live-state");
    var source = new EventSource(path || "/network/events");
    var count = 0;
    function say(text, cls) {
      if (!state) return;
      state.textContent = text;
      state.className = "live-state " + cls;
    }
    // Events between a page's first load and the stream opening would be missed: on every (re)open
    // the page is told ("stream.open") so that it reloads its data once.
    source.onopen = function () { say("Live updates: on", "on"); handle("stream.open", {}); };
    source.onerror = function () { say("Live updates: reconnecting", "off"); };
    EVENT_KINDS.forEach(function (kind) {
      source.addEventListener(kind, function (message) {
        var data = {};
        try { data = JSON.parse(message.data); } catch (e) { return; }
        count += 1;
        document.body.setAttribute("data-live-events", String(count));
        handle(kind, data);
      });
    });
    return source;
  }

  /** Call `fn` at most once per `ms`, after the last call (coalesces bursts of events). */
  function debounce(fn, ms) {
    var timer = null;
    return function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(function () { timer = null; fn(); }, ms);
    };
  }

  function when(iso) {
    if (!iso) return "–";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return d.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
  }

  function num(value, digits) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    return Number(value).toLocaleString(undefined, {maximumFractionDigits: digits === undefined ? 1 : digits});
  }

  function pct(value) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    return (100 * value).toLocaleString(undefined, {maximumFractionDigits: 1}) + " %";
  }

  var STATE_WORDS = {assigned: "awaiting the lab's answer", accepted: "accepted", running: "in production",
    done: "done", failed: "failed", refused: "refused", open: "open", planned: "planned",
    in_progress: "in production", cancelled: "cancelled"};

  function stateWord(state) { return STATE_WORDS[state] || state; }

  /** A progress bar with its text, readable by screen readers. */
  function progress(done, total, label) {
    var bar = el("progress", {max: Math.max(1, total), value: done, "aria-label": label});
    return el("span", {class: "progress-cell"}, bar, " " + done + " / " + total);
  }

  /** Show or clear an error paragraph. */
  function showError(node, message) {
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  /** A definition list from [term, value] pairs. */
  function facts(dl, pairs) {
    var items = [];
    pairs.forEach(function (pair) {
      items.push(el("dt", {}, pair[0]));
      items.push(el("dd", {}, pair[1]));
    });
    dl.replaceChildren.apply(dl, items);
  }

  /** Plotly configuration shared by every chart: outlines from this planner, never a CDN. */
  var PLOT_CONFIG = {responsive: true, displaylogo: false, topojsonURL: "/static/"};

  return {el: el, fillTable: fillTable, api: api, live: live, debounce: debounce, when: when, num: num,
    pct: pct, stateWord: stateWord, progress: progress, showError: showError, facts: facts,
    PLOT_CONFIG: PLOT_CONFIG, ApiError: ApiError, requesterToken: requesterToken,
    rememberToken: rememberToken};
})();
