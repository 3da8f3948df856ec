// crossrec link explorer: reads the service's JSON API with the token kept in sessionStorage.
// No framework, no build step, nothing loaded from elsewhere: charts are drawn as inline SVG.
"use strict";

(function () {
  const TOKEN_KEY = "crossrec.token";
  const SVG = "http://www.w3.org/2000/svg";
  const TRUE_COLOUR = "#2a9d5c";
  const FALSE_COLOUR = "#9a9a9a";
  const state = { summary: null, signals: null, signalsError: null, platform: null, account: null };

  // -- small DOM helpers ---------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && digits === undefined) return v.toLocaleString("en");
    if (v !== 0 && Math.abs(v) < 0.001) return v.toExponential(1);
    return v.toFixed(digits === undefined ? 3 : digits);
  }

  function pct(v) { return v === null || v === undefined ? "–" : Math.round(v * 100) + " %"; }

  function table(headers, rows, cls) {
    const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
    const body = rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))));
    return el("table", { class: cls || "" }, el("thead", {}, head), el("tbody", {}, ...body));
  }

  // -- messages --------------------------------------------------------------------------------
  function message(text, kind) {
    const box = $("messages");
    clear(box);
    if (text) box.append(el("p", { class: "message " + (kind || "error") }, text));
  }

  function sectionError(section, text) {
    const body = clear(section.querySelector(".body"));
    body.append(el("p", { class: "message error" }, text));
  }

  // -- the API ---------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, text) { super(text); this.status = status; }
  }

  async function api(path) {
    const token = sessionStorage.getItem(TOKEN_KEY) || "";
    let response;
    try {
      response = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    } catch (e) {
      throw new ApiError(0, "The server cannot be reached: is `crossrec serve` still running?");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const detail = body && body.error ? body.error : response.statusText;
      throw new ApiError(response.status, detail || "request failed (" + response.status + ")");
    }
    return body;
  }

  function explain(err) {
    if (!(err instanceof ApiError)) return "Unexpected error: " + err.message;
    if (err.status === 401) return "The token was refused (" + err.message + "). Enter another one.";
    if (err.status === 403) return "This token may not read: " + err.message;
    if (err.status === 404) return err.message.charAt(0).toUpperCase() + err.message.slice(1) + ".";
    if (err.status === 429) return "Too many requests: " + err.message + ". Try again shortly.";
    if (err.status === 0) return err.message;
    return "The server answered " + err.status + ": " + err.message;
  }

  function fail(err) {
    message(explain(err), "error");
    if (err instanceof ApiError && err.status === 401) askToken();
  }

  // -- token -----------------------------------------------------------------------------------
  function askToken() {
    $("token-panel").hidden = false;
    $("lookup-panel").hidden = true;
    $("forget-token").hidden = true;
    $("token").focus();
  }

  async function start() {
    $("token-panel").hidden = true;
    $("forget-token").hidden = false;
    let summary;
    try {
      summary = await api("/v1/explorer/summary");
    } catch (err) {
      fail(err);
      return;
    }
    message("");
    state.summary = summary;
    $("model").textContent = summary.model_version
      ? "model " + summary.model_version : "no trained model loaded";
    const select = clear($("platform"));
    for (const p of summary.platforms) select.append(el("option", { value: p }, p));
    const withIds = Object.entries(summary.raw_ids || {});
    $("ids-note").textContent = withIds.length
      ? "Other accounts are shown by raw id on " +
        withIds.map(([p, n]) => p + " (" + fmt(n) + " ids)").join(", ") + "; elsewhere by pseudonym."
      : "Other accounts are shown by pseudonym (start the server with --ids PLATFORM=FILE for raw ids).";
    $("lookup-panel").hidden = false;
    renderSummary(summary);
    const wanted = new URLSearchParams(location.hash.slice(1));
    if (wanted.get("platform") && wanted.get("account")) {
      select.value = wanted.get("platform");
      $("account").value = wanted.get("account");
      lookup(wanted.get("platform"), wanted.get("account"));
    }
  }

  // -- charts ----------------------------------------------------------------------------------
  // A 0..1 × 0..1 chart of lines and points: series = [{points: [[x, y]], colour, label, dots}].
  function unitChart(title, xLabel, yLabel, series, extra) {
    const W = 340, H = 290, L = 42, R = 14, T = 22, B = 86;
    const x = (v) => L + v * (W - L - R), y = (v) => H - B - v * (H - T - B);
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "chart" });
    g.append(svg("title", {}, title));
    g.append(svg("text", { x: L, y: 14, class: "chart-title" }, title));
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      g.append(svg("line", { x1: x(0), x2: x(1), y1: y(t), y2: y(t), class: "grid" }));
      g.append(svg("text", { x: L - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, t));
      g.append(svg("text", { x: x(t), y: H - B + 14, class: "tick", "text-anchor": "middle" }, t));
    }
    g.append(svg("text", { x: (L + W - R) / 2, y: H - B + 30, class: "axis", "text-anchor": "middle" }, xLabel));
    g.append(svg("text", { x: 12, y: (T + H - B) / 2, class: "axis", "text-anchor": "middle",
      transform: `rotate(-90 12 ${(T + H - B) / 2})` }, yLabel));
    if (extra) extra(g, x, y);
    let legendY = H - B + 48;
    for (const s of series) {
      const pts = s.points.filter((p) => p[0] !== null && p[1] !== null);
      if (!pts.length) continue;
      if (s.dots) {
        for (const p of pts) g.append(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 3.5, fill: s.colour }));
      }
      if (!s.noLine) {
        const d = pts.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join("");
        g.append(svg("path", { d, fill: "none", stroke: s.colour, "stroke-width": 2 }));
      }
      g.append(svg("rect", { x: L, y: legendY - 8, width: 10, height: 10, fill: s.colour }));
      g.append(svg("text", { x: L + 14, y: legendY + 1, class: "tick" }, s.label));
      legendY += 14;
    }
    return g;
  }

  function prChart(curves, operating) {
    const series = curves.map((c) => ({
      label: c.label, colour: c.colour,
      points: c.curve.recall.map((r, i) => [r, c.curve.precision[i]]),
    }));
    if (operating) series.push({ label: "operating point (held-out, after one-to-one assignment)", colour: "#000", points: [operating], dots: true, noLine: true });
    return unitChart("Precision–recall", "recall", "precision", series);
  }

  function calibrationChart(curves) {
    const series = curves.map((c) => ({
      label: c.label, colour: c.colour, dots: true,
      points: (c.bins.mean_predicted || []).map((p, i) => [p, c.bins.observed[i]]),
    }));
    return unitChart("Calibration", "predicted probability", "observed share true", series, (g, x, y) => {
      g.append(svg("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), class: "diagonal" }));
    });
  }

  // A signal's distribution among true and false pairs, with this pair's value marked.
  function distributionChart(hist, value) {
    const W = 300, H = 64, P = 4;
    const edges = hist.edges, n = edges.length - 1;
    const lo = edges[0], hi = edges[n];
    const top = Math.max(...hist.true, ...hist.false, 1e-9);
    const x = (v) => P + ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * (W - 2 * P);
    const g = svg("svg", { viewBox: `0 0 ${W} ${H + 14}`, width: W, height: H + 14, class: "dist", role: "img" });
    g.append(svg("title", {}, "distribution among true (green) and false (grey) pairs"));
    for (const [shares, colour] of [[hist.false, FALSE_COLOUR], [hist.true, TRUE_COLOUR]]) {
      const d = ["M", x(lo), H];
      for (let i = 0; i < n; i++) d.push("L", x(edges[i]), H - (shares[i] / top) * (H - 6), "L", x(edges[i + 1]), H - (shares[i] / top) * (H - 6));
      d.push("L", x(hi), H, "Z");
      g.append(svg("path", { d: d.join(" "), fill: colour, "fill-opacity": 0.45, stroke: colour }));
    }
    g.append(svg("line", { x1: x(value), x2: x(value), y1: 0, y2: H, class: "marker" }));
    g.append(svg("text", { x: P, y: H + 12, class: "tick" }, fmt(lo, 2)));
    g.append(svg("text", { x: W - P, y: H + 12, class: "tick", "text-anchor": "end" }, fmt(hi, 2)));
    return g;
  }

  function probabilityBar(p) {
    const W = 120, H = 12;
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "bar", role: "img" });
    g.append(svg("title", {}, "probability " + fmt(p)));
    g.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "bar-back" }));
    g.append(svg("rect", { x: 0, y: 0, width: Math.max(0, Math.min(1, p)) * W, height: H, class: "bar-fill" }));
    return g;
  }

  function rhythmChart(rhythm) {
    const C = 14, L = 34, T = 16;
    const W = L + 24 * C + 4, H = T + 7 * C + 4;
    const max = Math.max(1, ...rhythm.counts.flat());
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "rhythm", role: "img" });
    g.append(svg("title", {}, "events per day of week and hour of day (UTC)"));
    for (let h = 0; h < 24; h += 3) g.append(svg("text", { x: L + h * C + C / 2, y: 11, class: "tick", "text-anchor": "middle" }, h));
    rhythm.days.forEach((day, d) => {
      g.append(svg("text", { x: L - 4, y: T + d * C + C - 3, class: "tick", "text-anchor": "end" }, day));
      for (let h = 0; h < 24; h++) {
        const v = rhythm.counts[d][h];
        const cell = svg("rect", { x: L + h * C, y: T + d * C, width: C - 1, height: C - 1,
          class: "cell", "fill-opacity": v ? 0.15 + 0.85 * (v / max) : 0.04 });
        cell.append(svg("title", {}, `${day} ${h}:00 — ${v} event(s)`));
        g.append(cell);
      }
    });
    return g;
  }

  // -- sections --------------------------------------------------------------------------------
  function renderSummary(summary) {
    const section = $("summary");
    section.hidden = false;
    const body = clear(section.querySelector(".body"));
    const link = summary.link;
    if (!summary.model_version) {
      body.append(el("p", { class: "message info" }, "No trained model is loaded: run `crossrec train` and `crossrec link`."));
      return;
    }
    if (!link || !link.linked) {
      body.append(el("p", { class: "message info" }, (link && link.note) || "This model has not linked accounts yet: run `crossrec link`."));
      return;
    }
    const facts = [
      ["threshold", fmt(link.threshold)],
      ["target precision", fmt(link.target_precision)],
      ["held-out precision", fmt(link.heldout_precision)],
      ["held-out recall", fmt(link.heldout_recall)],
      ["asserted links", fmt(link.asserted_links)],
      ["known links", fmt(link.known_links)],
      ["persons", fmt(link.persons)],
      ["candidate pairs", fmt(link.candidate_pairs)],
    ];
    body.append(el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    if (link.reason) body.append(el("p", { class: "message info" }, link.reason));
    const pr = [], cal = [];
    if (link.heldout) {
      pr.push({ label: "held-out known links", colour: "#3366aa", curve: link.heldout.pr_curve });
      cal.push({ label: "held-out known links", colour: "#3366aa", bins: link.heldout.calibration });
    }
    if (link.truth) {
      pr.push({ label: "truth evaluation", colour: "#d07020", curve: link.truth.pr_curve });
      cal.push({ label: "truth evaluation", colour: "#d07020", bins: link.truth.calibration });
    }
    const operating = link.heldout_recall !== null && link.heldout_precision !== null
      ? [link.heldout_recall, link.heldout_precision] : null;
    if (pr.length) {
      body.append(el("div", { class: "charts" }, prChart(pr, operating), calibrationChart(cal)));
      body.append(el("p", { class: "meta" },
        "Held-out: training pairs of known-linked accounts, each scored out of fold by a matcher that never saw it" +
        (link.heldout ? " (" + fmt(link.heldout.pairs) + " pairs, " + fmt(link.heldout.true_pairs) + " true)" : "") +
        ", before one-to-one assignment." +
        (link.truth ? " Truth: `crossrec evaluate link` on this model." : "")));
    }
  }

  async function signals() {
    if (state.signals || state.signalsError) return state.signals;
    try { state.signals = await api("/v1/explorer/signals"); } catch (err) { state.signalsError = explain(err); }
    return state.signals;
  }

  function accountLabel(platform, account, isRaw) {
    return el("span", { class: isRaw ? "acct" : "acct pseudo", title: isRaw ? "raw id" : "pseudonym: no id list for this account" },
      platform + " · " + account);
  }

  function renderPerson(doc, dist) {
    const body = clear($("person").querySelector(".body"));
    const others = doc.accounts.filter((a) => !a.query);
    body.append(el("p", { class: "lead" },
      doc.person === null && !doc.links.length
        ? "This account is not linked to any account on another platform."
        : "Person " + (doc.person === null ? "(not in the identity graph)" : "#" + doc.person) +
          ": " + doc.accounts.length + " account(s)."));
    body.append(table(["platform", "account", "shown as"],
      doc.accounts.map((a) => [a.platform, el("span", { class: a.raw_id ? "acct" : "acct pseudo" }, a.account),
        a.query ? "looked up" : a.raw_id ? "raw id" : "pseudonym"]), "accounts"));
    if (doc.candidates.length) {
      body.append(el("h3", {}, "Best candidates (no asserted or known link)"));
      body.append(table(["account", "probability", "", "status"],
        doc.candidates.map((c) => [accountLabel(c.platform, c.account, c.raw_id), probabilityBar(c.probability),
          fmt(c.probability, 3), el("span", { class: "status status-" + c.status.replace(/ /g, "-") }, c.status)]), "candidates"));
    }
    if (!others.length) return;
    const list = el("div", { class: "links" });
    for (const link of doc.links) {
      const card = el("article", { class: "link" });
      card.append(el("header", {},
        accountLabel(link.platform_a, link.account_a, link.raw_a), " ↔ ", accountLabel(link.platform_b, link.account_b, link.raw_b),
        " ", el("span", { class: "status status-" + link.status }, link.status),
        " ", probabilityBar(link.probability), " ", el("strong", {}, fmt(link.probability, 3)),
        " ", el("span", { class: "meta" }, link.source + (link.rank ? ", candidate #" + link.rank : ""))));
      if (!link.evidence.length) {
        card.append(el("p", { class: "meta" }, link.status === "known" ? "A known link (supplied, not inferred)." : "No evidence recorded."));
      }
      for (const ev of link.evidence) {
        const hist = dist && dist.signals ? dist.signals[ev.signal] : null;
        const row = el("div", { class: "evidence", "data-signal": ev.signal });
        row.append(el("div", { class: "evidence-text" }, el("strong", {}, ev.signal), " = " + fmt(ev.value), el("br"), ev.text,
          ev.false_below !== null
            ? el("div", { class: "meta" }, "higher than " + pct(ev.false_below) + " of false pairs and " + pct(ev.true_below) + " of true pairs")
            : el("div", { class: "meta" }, "no distribution: not a matcher input")));
        if (hist) row.append(distributionChart(hist, ev.value));
        card.append(row);
      }
      list.append(card);
    }
    body.append(list);
    if (state.signalsError) body.append(el("p", { class: "meta" }, "Signal distributions unavailable: " + state.signalsError));
    else body.append(el("p", { class: "meta legend" }, el("span", { class: "swatch true" }), "true pairs ",
      el("span", { class: "swatch false" }, ""), "false pairs (the matcher's training pairs); the line marks this link's value."));
  }

  function renderProfile(doc, rhythm) {
    const body = clear($("profile").querySelector(".body"));
    const facts = [
      ["events", fmt(doc.events)],
      ["first event", doc.first_event || "–"],
      ["last event", doc.last_event || "–"],
      ["active days", fmt(doc.active_days)],
      ["top categories", doc.top_categories.length ? doc.top_categories.join(", ") : "–"],
      ["event types", Object.entries(doc.event_types).map(([k, v]) => k + " " + v).join(", ") || "–"],
      ["in model", doc.in_model ? "yes" + (doc.updated_online ? " (updated online)" : "") : "no (newer than the model)"],
    ];
    body.append(el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    body.append(el("h3", {}, "Weekly rhythm (UTC)"));
    body.append(rhythm ? rhythmChart(rhythm) : el("p", { class: "meta" }, "No timestamps on this platform's events."));
  }

  async function loadSimilar() {
    const section = $("similar");
    const on = $("similar-on").value;
    if (!on || !state.account) return;
    const body = clear(section.querySelector(".body"));
    body.append(el("p", { class: "meta" }, "loading…"));
    try {
      const doc = await api(`/v1/platforms/${encodeURIComponent(state.platform)}/accounts/${encodeURIComponent(state.account)}/similar?on=${encodeURIComponent(on)}&k=10`);
      clear(body);
      if (!doc.similar.length) { body.append(el("p", { class: "meta" }, "No similar accounts found.")); return; }
      body.append(table(["account", "similarity", "top categories"],
        doc.similar.map((s) => [el("span", { class: s.account_raw ? "acct" : "acct pseudo" }, s.account_raw || s.account),
          fmt(s.similarity), (s.top_categories || []).join(", ")])));
    } catch (err) { sectionError(section, explain(err)); }
  }

  function renderRecommendations(doc) {
    const body = clear($("recommendations").querySelector(".body"));
    if (!doc.items.length) { body.append(el("p", { class: "meta" }, "Nothing to recommend.")); return; }
    body.append(table(["#", "item", "category", "score", "why"],
      doc.items.map((r, i) => [String(i + 1), el("span", { title: r.item }, r.title || r.item), r.category || "–", fmt(r.score), r.reason])));
  }

  async function lookup(platform, account) {
    state.platform = platform;
    state.account = account;
    history.replaceState(null, "", "#" + new URLSearchParams({ platform, account }).toString());
    message("");
    const base = `/v1/platforms/${encodeURIComponent(platform)}/accounts/${encodeURIComponent(account)}`;
    let person;
    try {
      const [doc, dist] = await Promise.all([
        api(`/v1/explorer/platforms/${encodeURIComponent(platform)}/accounts/${encodeURIComponent(account)}`),
        signals(),
      ]);
      person = doc;
      $("results").hidden = false;
      renderPerson(doc, dist);
    } catch (err) {
      $("results").hidden = true;
      fail(err);
      return;
    }
    const onSelect = clear($("similar-on"));
    for (const p of state.summary.platforms.filter((p) => p !== platform)) onSelect.append(el("option", { value: p }, p));
    const jobs = [
      api(base + "/profile").then((doc) => renderProfile(doc, person.rhythm), (err) => sectionError($("profile"), explain(err))),
      api(base + "/recommendations?k=10").then(renderRecommendations, (err) => sectionError($("recommendations"), explain(err))),
    ];
    if (onSelect.value) jobs.push(loadSimilar());
    else sectionError($("similar"), "No other platform to search.");
    await Promise.all(jobs);
  }

  // -- wiring ----------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      start();
    });
    $("forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("results").hidden = true;
      $("summary").hidden = true;
      message("");
      askToken();
    });
    $("lookup-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const account = $("account").value.trim();
      if (!account) { message("Enter an account id.", "error"); return; }
      lookup($("platform").value, account);
    });
    $("similar-on").addEventListener("change", loadSimilar);
    if (sessionStorage.getItem(TOKEN_KEY)) start(); else askToken();
  });
})();
