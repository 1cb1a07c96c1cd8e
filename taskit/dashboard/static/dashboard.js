// taskit dashboard: actions (POST + CSRF token), the live stream (Server-Sent Events) and the
// chart (inline SVG). Plain JS, no build step, no external assets.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base || "";
  var SVG = "http://www.w3.org/2000/svg";
  var lastOverview = null;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $$(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  function flash(text, ok) {
    var area = $("[data-testid=flash]");
    if (!area) return;
    area.textContent = text;
    area.className = "flash " + (ok ? "ok" : "error");
    area.hidden = false;
  }

  function token() {
    var meta = $("meta[name=csrf-token]");
    return meta ? meta.getAttribute("content") : "";
  }

  function post(url, payload) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token() },
      body: JSON.stringify(payload || {})
    }).then(function (response) {
      return response.json().catch(function () {
        return { ok: false, error: "HTTP " + response.status };
      });
    });
  }

  // Re-read the page and swap its <main> in place: the new state shows without a reload.
  function refresh() {
    return fetch(location.href, { credentials: "same-origin" }).then(function (response) {
      return response.text();
    }).then(function (html) {
      var page = new DOMParser().parseFromString(html, "text/html");
      var fresh = $("main", page);
      if (fresh) $("main").innerHTML = fresh.innerHTML;
      drawChart(lastOverview || initialOverview());
    });
  }

  function report(reply, action) {
    flash(reply.ok ? reply.message : reply.error, reply.ok);
    if (!reply.ok) return;
    // A job deleted from its own page is gone: re-reading the page would answer 404.
    if (action === "delete" && body.dataset.page === "job") {
      var status = $("[data-testid=job-status]");
      if (status) { status.textContent = "deleted"; status.className = "status-deleted"; }
      $$("button[data-action]").forEach(function (other) { other.remove(); });
      return;
    }
    return refresh();
  }

  function selected() {
    var byQueue = {};
    $$("input[data-select]:checked").forEach(function (box) {
      (byQueue[box.dataset.queue] = byQueue[box.dataset.queue] || []).push(box.dataset.select);
    });
    return byQueue;
  }

  // Several queues: one request each, their counts summed into one message.
  function bulk(verb, requests, none) {
    var done = verb === "requeue" ? "requeued" : "deleted";
    if (!requests.length) { flash(none, false); return; }
    var total = 0;
    var chain = Promise.resolve({ ok: true });
    requests.forEach(function (item) {
      chain = chain.then(function (reply) {
        if (!reply.ok) return reply;
        return post(base + "/actions/dead/" + encodeURIComponent(item.queue) + "/" + verb, item.payload)
          .then(function (next) { if (next.ok) total += next.count || 0; return next; });
      });
    });
    chain.then(function (reply) {
      report(reply.ok ? { ok: true, message: done + " " + total + " dead letter(s)" } : reply);
    });
  }

  function deadAction(action) {
    var verb = action.indexOf("requeue") === 0 ? "requeue" : "delete";
    if (action.slice(-8) === "selected") {
      var byQueue = selected();
      bulk(verb, Object.keys(byQueue).map(function (queue) {
        return { queue: queue, payload: { ids: byQueue[queue] } };
      }), "Select some dead letters first.");
      return;
    }
    var panel = $(".bulk");
    var queues = JSON.parse(panel.dataset.queues || "[]");
    bulk(verb, queues.map(function (queue) {
      return { queue: queue, payload: { all: true, task: panel.dataset.task || null, q: panel.dataset.q || null } };
    }), "No queue has dead letters.");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-action]") : null;
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    var action = button.dataset.action;
    if (/-(selected|matching)$/.test(action)) { deadAction(action); return; }
    button.disabled = true;
    post(button.dataset.url, {}).then(function (reply) { return report(reply, action); }).catch(function (error) {
      flash("The request failed: " + error, false);
    }).then(function () { button.disabled = false; });
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("[data-select-all]")) {
      $$("input[data-select]").forEach(function (box) { box.checked = event.target.checked; });
    }
  });

  // -- the chart: completed and failed jobs per minute, two polylines over a grid ----------------
  function initialOverview() {
    var script = $("#overview-data");
    return script ? JSON.parse(script.textContent) : null;
  }

  function node(name, attrs, parent) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { element.setAttribute(key, attrs[key]); });
    if (parent) parent.appendChild(element);
    return element;
  }

  function drawChart(data) {
    var svg = $("[data-testid=chart]");
    if (!svg || !data || !data.chart) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    // Drawn at the element's own size (one user unit a pixel), so text is never stretched.
    var width = Math.max(300, Math.round(svg.clientWidth || 600));
    var height = Math.max(120, Math.round(svg.clientHeight || 200));
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    var points = data.chart, bottom = 18, top = 8;
    var most = 1;
    points.forEach(function (p) { most = Math.max(most, p.completed, p.failed); });
    // Room for the longest axis label (about 7 px a digit): "100000" must not be cut off.
    var left = Math.max(36, 10 + 7 * String(most).length);
    var x = function (i) { return left + (width - left - 4) * i / Math.max(1, points.length - 1); };
    var y = function (v) { return top + (height - top - bottom) * (1 - v / most); };
    [0, 0.5, 1].forEach(function (f) {
      var value = Math.round(most * f);
      node("line", { x1: left, x2: width - 4, y1: y(value), y2: y(value), "class": "grid" }, svg);
      node("text", { x: left - 4, y: y(value) + 4, "text-anchor": "end", "class": "axis" }, svg).textContent = value;
    });
    node("text", { x: left, y: height - 4, "class": "axis" }, svg).textContent = "-60 min";
    node("text", { x: width - 4, y: height - 4, "text-anchor": "end", "class": "axis" }, svg).textContent = "now";
    ["completed", "failed"].forEach(function (key) {
      var line = points.map(function (p, i) { return x(i).toFixed(1) + "," + y(p[key]).toFixed(1); });
      node("polyline", { points: line.join(" "), "class": "series " + key, "data-series": key }, svg);
    });
  }

  // -- live updates ------------------------------------------------------------------------------
  function text(value) { return value === null || value === undefined ? "" : String(value); }

  function progressText(item) {
    return (item.percent === null || item.percent === undefined ? "" : item.percent + "%") +
      (item.message ? " " + item.message : "");
  }

  function showProgress(item) {
    $$("[data-progress-job]").forEach(function (element) {
      if (element.dataset.progressJob !== item.id) return;
      element.textContent = progressText(item) || "-";
      var bar = element.parentNode && $("progress", element.parentNode);
      if (bar && item.percent !== null && item.percent !== undefined) bar.value = item.percent;
    });
  }

  function cell(row, value, href) {
    var td = row.insertCell();
    if (href) {
      var a = document.createElement("a");
      a.href = href; a.textContent = text(value); td.appendChild(a);
    } else {
      td.textContent = text(value);
    }
    return td;
  }

  function fill(tbody, items, build) {
    if (!tbody) return;
    while (tbody.rows.length) tbody.deleteRow(0);
    items.forEach(function (item) { build(tbody.insertRow(), item); });
  }

  function jobHref(id) { return base + "/jobs/" + encodeURIComponent(id); }

  function runningRow(row, r, withBar) {
    row.dataset.jobId = r.id;
    cell(row, r.id, jobHref(r.id)); cell(row, r.task); cell(row, r.queue); cell(row, r.started_at);
    var td = row.insertCell();
    if (withBar) {
      var bar = document.createElement("progress");
      bar.max = 100;
      if (r.percent !== null && r.percent !== undefined) bar.value = r.percent;
      td.appendChild(bar); td.appendChild(document.createTextNode(" "));
    }
    var span = document.createElement("span");
    span.dataset.progressJob = r.id;
    span.textContent = progressText(r);
    td.appendChild(span);
  }

  function onOverview(data) {
    lastOverview = data;
    Object.keys(data.stats).forEach(function (key) {
      $$('[data-stat="' + key + '"]').forEach(function (element) { element.textContent = data.stats[key]; });
    });
    drawChart(data);
    fill($("[data-live=queues]"), Object.keys(data.queues), function (row, name) {
      cell(row, name, base + "/jobs?queue=" + encodeURIComponent(name));
      cell(row, data.queues[name]).className = "num";
    });
    fill($("[data-live=workers]"), data.workers, function (row, w) {
      cell(row, w.name); cell(row, w.host); cell(row, w.running).className = "num"; cell(row, w.jobs_done).className = "num";
    });
    fill($("[data-live=running]"), data.running, function (row, r) { runningRow(row, r, false); });
    var progress = $("[data-live=progress]");
    if (progress) {
      fill(progress, data.running, function (row, r) { runningRow(row, r, true); });
      if (!data.running.length) {
        var empty = progress.insertRow(); empty.className = "empty-row";
        var td = empty.insertCell(); td.colSpan = 5; td.className = "empty"; td.textContent = "No job is running.";
      }
    } else {
      data.running.forEach(showProgress);
    }
  }

  function connect() {
    var status = $("[data-testid=live-status]");
    if (!window.EventSource) { if (status) status.textContent = "off"; return; }
    var source = new EventSource(base + "/api/live");
    source.onopen = function () { if (status) { status.textContent = "live"; status.className = "live-status on"; } };
    source.onerror = function () { if (status) { status.textContent = "reconnecting"; status.className = "live-status off"; } };
    source.addEventListener("overview", function (event) { onOverview(JSON.parse(event.data)); });
    source.addEventListener("progress", function (event) { showProgress(JSON.parse(event.data)); });
    source.addEventListener("failure", function (event) { flash("Broker unreachable: " + JSON.parse(event.data).error, false); });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  drawChart(initialOverview());
  window.addEventListener("resize", function () { drawChart(lastOverview || initialOverview()); });
  connect();
})();
