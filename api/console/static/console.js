// Millrace console: times in the viewer's zone (UTC on hover), and live tables that poll
// one indexed query while something can still change. No framework, nothing fetched from elsewhere.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.textContent = when.toLocaleString(); el.title = el.getAttribute("datetime") + " (UTC)"; }
    });
  }
  var MARKS = {succeeded: "✓", failed: "✗", cancelled: "⊘", running: "▸", queued: "…", suspended: "⏸", waiting: "⏸", skipped: "–"};
  function status(value) {
    var span = document.createElement("span");
    span.className = "status status-" + value;
    var mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = MARKS[value] || "•";
    span.appendChild(mark);
    span.appendChild(document.createTextNode(" " + value));
    return span;
  }
  function cell(row, content) {
    var td = document.createElement("td");
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = content == null ? "" : content; }
    row.appendChild(td);
    return td;
  }
  function link(href, text) { var a = document.createElement("a"); a.href = href; a.textContent = text; return a; }
  function poll(url, every, draw) {
    var timer = null;
    function tick() {
      fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data && draw(data) !== false) { timer = setTimeout(tick, every); } })
        .catch(function () { timer = setTimeout(tick, every * 3); });
    }
    timer = setTimeout(tick, every);
  }
  var runs = document.getElementById("runs");
  if (runs && runs.dataset.live) {
    poll(runs.dataset.live, 3000, function (data) {
      var body = runs.querySelector("tbody");
      body.textContent = "";
      data.items.forEach(function (r) {
        var row = document.createElement("tr");
        cell(row, link("/runs/" + r.id, r.id.slice(0, 8)));
        cell(row, r.flow + "@" + r.version);
        var labels = cell(row, "");
        Object.keys(r.labels || {}).sort().forEach(function (k) {
          var a = link("/?labels=" + encodeURIComponent(k + ":" + r.labels[k]), k + ": " + r.labels[k]);
          a.className = "label";
          labels.appendChild(a); labels.appendChild(document.createTextNode(" "));
        });
        cell(row, status(r.status));
        cell(row, r.trigger);
        cell(row, r.by || "-");
        var t = document.createElement("time"); t.setAttribute("datetime", r.created_at); t.textContent = r.created_at;
        cell(row, t);
        cell(row, r.took);
        cell(row, (r.error || "").slice(0, 120)).className = "error-cell";
        body.appendChild(row);
      });
      localTimes(body);
    });
  }
  var steps = document.getElementById("steps");
  if (steps && steps.dataset.finished !== "true") {
    poll(steps.dataset.live, 1000, function (data) {
      var body = steps.querySelector("tbody");
      body.textContent = "";
      data.steps.forEach(function (s) {
        var row = document.createElement("tr");
        row.dataset.path = s.path;
        cell(row, s.path).style.paddingLeft = (0.5 + s.depth) + "em";
        var shown = cell(row, status(s.status));
        if (s.reused_from) {
          var mark = document.createElement("span");
          mark.className = "reused";
          mark.title = "reused from run " + s.reused_from;
          mark.textContent = "reused";
          shown.appendChild(document.createTextNode(" "));
          shown.appendChild(mark);
        }
        cell(row, s.attempts);
        cell(row, s.took);
        cell(row, s.worker || "-");
        cell(row, s.error ? s.error.split("\n").pop().slice(0, 100) : "").className = "error-cell";
        cell(row, link(location.pathname + "/steps/" + s.path + "/logs", "logs"));
        body.appendChild(row);
      });
      var top = document.getElementById("run-status");
      top.textContent = ""; top.appendChild(status(data.status));
      document.getElementById("run-error").textContent = data.error || "";
      document.getElementById("run-result").textContent = data.result;
      var graph = document.getElementById("graph");
      var open = Array.prototype.map.call(graph.querySelectorAll("details[open]"), function (d) {
        return d.parentElement.dataset.path; });
      graph.innerHTML = data.graph;  // rendered by the server from the same records, escaped there
      open.forEach(function (path) {
        var again = graph.querySelector('[data-path="' + CSS.escape(path) + '"] > details');
        if (again) { again.open = true; }
      });
      localTimes(graph);
      if (data.finished) {  // nothing changes any more: stop polling, and take away what no longer applies
        var cancel = document.getElementById("cancel-form");
        if (cancel) { cancel.remove(); }
        document.querySelectorAll("form.decision").forEach(function (f) { f.remove(); });
        return false;
      }
    });
  }
  var logs = document.getElementById("logs");
  if (logs && logs.dataset.finished !== "true") {
    poll(logs.dataset.live, 1000, function (data) {
      if (data.attempt === null) { return !data.finished; }  // not started yet: ask again
      var out = document.getElementById("logs-" + data.attempt);
      if (!out) { location.reload(); return false; }  // a new attempt began: show it with its heading
      out.textContent = data.logs || "(no output yet)";
      if (data.finished) { location.reload(); return false; }  // its times and status, as recorded
    });
  }
  localTimes(document);
})();
