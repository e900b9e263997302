/* The map page: labs, delivery points and the current plan's flows, redrawn on live events. */
"use strict";

(function () {
  var el = Cosmo.el;
  var mapNode = document.getElementById("map");
  var drawn = false;

  /** The orders, for a requester (remembered token) or an open planner; null when not allowed. */
  function ordersIfAllowed() {
    return Cosmo.api("/orders").then(null, function (error) {
      if (error.status === 401 || error.status === 403) return null;
      throw error;
    });
  }

  function load() {
    return Promise.all([Cosmo.api("/labs"), Cosmo.api("/network/map"), ordersIfAllowed()]).then(function (r) {
      Cosmo.showError(document.getElementById("map-error"), "");
      draw(r[0], r[1], r[2] || []);
      tables(r[0], r[2]);
    }, function (error) {
      Cosmo.showError(document.getElementById("map-error"), "Cannot load the mesh: " + error.message);
    });
  }

  function queuedHours(lab) {
    var minutes = 0;
    Object.keys(lab.backlog_minutes || {}).forEach(function (m) { minutes += lab.backlog_minutes[m]; });
    return minutes / 60;
  }

  function draw(labs, map, orders) {
    var flowLat = [], flowLon = [];
    map.flows.forEach(function (f) {
      flowLat.push(f.from.lat, f.to.lat, null);
      flowLon.push(f.from.lon, f.to.lon, null);
    });
    var traces = [{
      type: "scattergeo", mode: "lines", name: "flows of the plan", lat: flowLat, lon: flowLon,
      line: {width: 2, color: "#0b4f8a"}, opacity: 0.6, hoverinfo: "skip",
    }];
    [["live labs", true, "#1d6b32"], ["lost labs", false, "#6b6b6b"]].forEach(function (kind) {
      var chosen = labs.filter(function (l) { return l.live === kind[1]; });
      traces.push({
        type: "scattergeo", mode: "markers", name: kind[0],
        lat: chosen.map(function (l) { return l.location.lat; }),
        lon: chosen.map(function (l) { return l.location.lon; }),
        customdata: chosen.map(function (l) { return l.id; }),
        text: chosen.map(function (l) {
          return l.name + "<br>" + l.machines.length + " machines, " + Cosmo.num(queuedHours(l)) +
            " machine-hours queued<br>" + (l.live ? "live" : "lost");
        }),
        hoverinfo: "text",
        marker: {color: kind[2], size: chosen.map(function (l) { return 9 + Math.min(14, Math.sqrt(queuedHours(l)) * 2); }),
          line: {color: "#ffffff", width: 1}},
      });
    });
    [["places still waiting", true, "#b34700"], ["places served", false, "#0b4f8a"]].forEach(function (kind) {
      var chosen = map.deliveries.filter(function (d) { return Boolean(d.open) === kind[1]; });
      traces.push({
        type: "scattergeo", mode: "markers", name: kind[0],
        lat: chosen.map(function (d) { return d.lat; }),
        lon: chosen.map(function (d) { return d.lon; }),
        text: chosen.map(function (d) {
          return (d.place || "delivery point") + "<br>" + d.orders + " order" + (d.orders > 1 ? "s" : "") +
            ", " + d.made + " of " + d.units + " units made";
        }),
        hoverinfo: "text",
        marker: {symbol: "diamond", color: kind[2], size: 11, line: {color: "#ffffff", width: 1}},
      });
    });
    var layout = {
      margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: true, legend: {orientation: "h", y: 0},
      geo: {scope: "world", resolution: 110, projection: {type: "mercator"}, fitbounds: "locations",
        showland: true, landcolor: "#eef0ea", showcountries: true, countrycolor: "#7d857d",
        showcoastlines: false, showocean: false, showlakes: false, showframe: false, bgcolor: "#f8fbff"},
    };
    // Frame the points with a margin of at least a few degrees, so country outlines show around them.
    var lats = [], lons = [];
    labs.forEach(function (l) { lats.push(l.location.lat); lons.push(l.location.lon); });
    map.deliveries.forEach(function (d) { lats.push(d.lat); lons.push(d.lon); });
    layout.geo.fitbounds = false;
    if (lats.length) {
      var span = function (values, least, lo, hi) {
        var min = Math.min.apply(null, values), max = Math.max.apply(null, values);
        var pad = Math.max(least - (max - min), 0) / 2 + (max - min) * 0.1;
        return [Math.max(lo, min - pad), Math.min(hi, max + pad)];
      };
      layout.geo.lataxis = {range: span(lats, 8, -85, 85)};
      layout.geo.lonaxis = {range: span(lons, 12, -180, 180)};
    }
    if (drawn) Plotly.react(mapNode, traces, layout, Cosmo.PLOT_CONFIG);
    else Plotly.newPlot(mapNode, traces, layout, Cosmo.PLOT_CONFIG);
    drawn = true;
    mapNode.setAttribute("data-orders", orders.map(function (o) { return o.id; }).join(" "));
    mapNode.setAttribute("data-flows", String(flowLat.length / 3));
  }

  function tables(labs, orders) {
    Cosmo.fillTable(document.getElementById("labs-table"), labs.map(function (l) {
      var running = l.jobs_running;
      return el("tr", {"data-lab": l.id},
        el("td", {}, l.name), el("td", {}, l.location.place || (l.location.lat + ", " + l.location.lon)),
        el("td", {}, l.live ? "live" : "lost"), el("td", {}, String(l.machines.length)),
        el("td", {}, Cosmo.num(queuedHours(l))), el("td", {}, String(running)));
    }));
    var note = document.getElementById("orders-note");
    note.hidden = orders !== null;
    Cosmo.fillTable(document.getElementById("orders-table"), (orders || []).slice().reverse().map(function (o) {
      return el("tr", {"data-order": o.id},
        el("td", {}, el("a", {href: "/order/" + encodeURIComponent(o.id)}, o.id)),
        el("td", {}, o.design), el("td", {}, o.units_made + " / " + o.quantity),
        el("td", {}, o.delivery.place || (o.delivery.lat + ", " + o.delivery.lon)),
        el("td", {}, o.priority), el("td", {}, Cosmo.stateWord(o.state)));
    }));
  }

  var refresh = Cosmo.debounce(load, 400);
  load();
  Cosmo.live(function () { refresh(); }, "/network/events");
})();
