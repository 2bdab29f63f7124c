/* The status page's charts, drawn with the vendored uPlot (static/uPlot.iife.min.js, MIT).
   Fleet page: every .chart[data-src] fetches its window's JSON (same origin, the session cookie)
   and draws either the states (healthy/unhealthy/unknown) or the unhealthy proxies by code.
   Proxy page: #phase-data (inert JSON in the HTML) gives the latency per phase of each check.
   No inline script anywhere: the Content-Security-Policy allows scripts from /ui/static only. */
(function () {
  "use strict";
  var COLOURS = { healthy: "#2e7d32", unhealthy: "#c62828", unknown: "#9e9e9e" };
  var PALETTE = ["#c62828", "#ef6c00", "#6a1b9a", "#1565c0", "#00838f", "#5d4037", "#ad1457", "#558b2f"];

  var MIN_WINDOW = 600; // seconds: the narrowest time axis drawn (a proxy's first check, a fresh fleet)

  function width(el) { return Math.max(320, el.clientWidth || 600); }

  // The x scale's range: the data's own span, widened around its middle to MIN_WINDOW when
  // shorter. uPlot pads a zero span (one point) by a share of the value itself, which for a time
  // in seconds is years (an axis from 2027 to 2029).
  function timeWindow(min, max) {
    if (max - min >= MIN_WINDOW) { return [min, max]; }
    var mid = (min + max) / 2;
    return [mid - MIN_WINDOW / 2, mid + MIN_WINDOW / 2];
  }

  function draw(el, title, t, named, colours) {
    var series = [{}], data = [t];
    Object.keys(named).forEach(function (name, i) {
      series.push({ label: name, stroke: colours[name] || PALETTE[i % PALETTE.length], width: 2, spanGaps: true });
      data.push(named[name]);
    });
    el.textContent = "";
    if (series.length === 1) { el.textContent = title + ": nothing to show"; return; }
    var x = { time: true, range: function (u, min, max) { return timeWindow(min, max); } };
    var shown = function (u, key) {  // the window drawn, in seconds (the browser test reads it)
      if (key === "x") { el.dataset.xMin = u.scales.x.min; el.dataset.xMax = u.scales.x.max; }
    };
    new uPlot({ title: title, width: width(el), height: 220, series: series, scales: { x: x },
                hooks: { setScale: [shown] } }, data, el);
  }

  window.proxycheckCharts = { timeWindow: timeWindow, MIN_WINDOW: MIN_WINDOW };

  var fetched = {};
  function load(src) {
    if (!fetched[src]) {
      fetched[src] = fetch(src, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) { throw new Error(src + ": HTTP " + r.status); }
        return r.json();
      });
    }
    return fetched[src];
  }

  document.querySelectorAll(".chart[data-src]").forEach(function (el) {
    load(el.dataset.src).then(function (d) {
      if (el.dataset.kind === "states") {
        draw(el, "Proxies by verdict", d.t, d.states, COLOURS);
      } else {
        draw(el, "Unhealthy proxies by code", d.t, d.codes, {});
      }
    }).catch(function (err) { el.textContent = "chart unavailable: " + err.message; });
  });

  var phases = document.getElementById("phase-data");
  if (phases) {
    var d = JSON.parse(phases.textContent);
    var el = document.getElementById("phases");
    if (d.t.length) { draw(el, "Latency per phase (ms)", d.t, d.phases, {}); } else { el.textContent = "no checks yet"; }
  }
})();
