// Live alerts for the console: an EventSource on /console/alerts-stream; new rows and status updates without reload.
(function () {
  "use strict";
  var table = document.getElementById("alerts");
  var badge = document.getElementById("live");
  var toast = document.getElementById("toast");
  if (!window.EventSource) { return; }
  if (table && table.getAttribute("data-live") === "0") { table = null; }  // a search or an older page: no inserts
  var filter = table ? table.getAttribute("data-status") : "";
  var source = new EventSource("/console/alerts-stream");
  function text(value) { return value === null || value === undefined ? "" : String(value); }
  function cell(row, content, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = text(content); }
    row.appendChild(td);
  }
  function show(message) {
    if (!toast) { return; }
    toast.textContent = message; toast.style.display = "block";
    window.clearTimeout(show.timer);
    show.timer = window.setTimeout(function () { toast.style.display = "none"; }, 5000);
  }
  source.onopen = function () { if (badge) { badge.className = "live on"; badge.textContent = "live"; } };
  source.onerror = function () { if (badge) { badge.className = "live off"; badge.textContent = "reconnecting"; } };
  source.addEventListener("alert", function (msg) {
    var a = JSON.parse(msg.data);
    show("New " + a.severity + " alert: " + a.kind + " on " + (a.hostname || a.device_id || "fleet"));
    if (!table || document.getElementById("alert-" + a.id) || (filter && filter !== "active" && filter !== "open")) { return; }
    var row = document.createElement("tr");
    row.id = "alert-" + a.id; row.className = "new";
    var link = document.createElement("a"); link.href = a.url; link.textContent = "#" + a.id;
    cell(row, link);
    var sev = document.createElement("span"); sev.className = "sev sev-" + a.severity; sev.textContent = a.severity;
    cell(row, sev);
    cell(row, a.kind); cell(row, a.team); cell(row, a.hostname || a.device_id); cell(row, a.user);
    cell(row, a.status, "status status-" + a.status);
    var when = document.createElement("time");
    when.setAttribute("datetime", a.created_at || ""); when.setAttribute("data-precision", "s");
    when.textContent = (a.created_at || "").replace("T", " ").slice(0, 19) + " UTC";
    cell(row, when);
    cell(row, a.rule_name || "");
    var body = table.querySelector("tbody");
    var empty = document.getElementById("no-alerts");
    if (empty) { empty.remove(); }
    body.insertBefore(row, body.firstChild);
    if (window.dwLocalTime) { window.dwLocalTime(row); }
  });
  source.addEventListener("update", function (msg) {
    var a = JSON.parse(msg.data);
    var row = document.getElementById("alert-" + a.id);
    if (!row) { return; }
    var status = row.querySelector(".status");
    if (status) { status.textContent = a.status + (a.escalation_level ? " (escalated)" : ""); status.className = "status status-" + a.status; }
  });
})();
