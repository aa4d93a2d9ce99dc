// Shows every <time datetime="..."> of the console in the viewer's local time with its zone; the UTC value the
// server wrote stays in the element's datetime attribute and becomes its tooltip. window.dwLocalTime(root) redoes
// it for markup added later (the live alert list).
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zone(date) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
      for (var i = 0; i < parts.length; i++) { if (parts[i].type === "timeZoneName") { return parts[i].value; } }
    } catch (e) { /* very old browsers: fall back to the offset */ }
    var offset = -date.getTimezoneOffset();
    return "UTC" + (offset >= 0 ? "+" : "-") + pad(Math.floor(Math.abs(offset) / 60)) + ":" + pad(Math.abs(offset) % 60);
  }
  function local(el) {
    var stamp = el.getAttribute("datetime");
    var date = stamp ? new Date(stamp) : null;
    if (!date || isNaN(date.getTime()) || el.getAttribute("data-local") === "1") { return; }
    var text = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) +
      (el.getAttribute("data-precision") === "s" ? ":" + pad(date.getSeconds()) : "");
    el.title = el.textContent;
    el.textContent = text + " " + zone(date);
    el.setAttribute("data-local", "1");
  }
  function all(root) {
    var found = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < found.length; i++) { local(found[i]); }
  }
  window.dwLocalTime = all;
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", function () { all(); }); }
  else { all(); }
})();
