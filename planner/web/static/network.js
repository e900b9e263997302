/* The network page: plan figures, transport and CO2e, fill rate over time; live. */
"use strict";

(function () {
  var drawn = false;

  /* What a plan's lower bound holds for: every valid plan, or (an emergency insertion's) its own model. */
  function scope(value) {
    if (value === "all") return "every valid plan, on any lab";
    if (value === "model") return "only the plans of the solver's model (emergency insertions: nearby labs)";
    return "–";
  }

  function load() {
    return Cosmo.api("/network/stats").then(function (s) {
      Cosmo.showError(document.getElementById("network-error"), "");
      var plan = s.plan, totals = s.totals;
      Cosmo.facts(document.getElementById("plan"), [
        ["Plan version", String(plan.version)],
        ["Status", plan.status],
        ["Objective (last solve)", Cosmo.num(plan.objective)],
        ["Lower bound (last solve)", Cosmo.num(plan.bound)],
        ["Bound covers", scope(plan.bound_scope)],
        ["Gap (last solve)", Cosmo.pct(plan.gap)],
        ["Solve time", plan.solve_seconds === undefined ? "–" : Cosmo.num(plan.solve_seconds, 2) + " s"],
        ["Objective, all plans", Cosmo.num(totals.objective)],
        ["Lower bound, all plans", Cosmo.num(totals.bound)],
        ["Bound covers, all plans", scope(totals.bound_scope)],
        ["Plans committed", String(totals.plans)],
        ["Labs live", s.labs_live + " of " + s.labs_known],
        ["Orders done", s.orders_done + " of " + s.orders],
      ]);
      var t = s.transport;
      Cosmo.facts(document.getElementById("transport"), [
        ["Units made × km", Cosmo.num(t.made_unit_km) + " unit-km"],
        ["Made, tonne-km", Cosmo.num(t.made_tonne_km, 3)],
        ["Made, CO2e", Cosmo.num(t.made_co2_kg, 2) + " kg"],
        ["Whole plan, units × km", Cosmo.num(t.planned_unit_km) + " unit-km"],
        ["Whole plan, CO2e", Cosmo.num(t.planned_co2_kg, 2) + " kg"],
      ]);
      document.getElementById("co2-source").textContent = "CO2e factor: " + t.co2_factor_kg_per_tonne_km +
        " kg per tonne-km. Source: " + t.co2_source + ".";
      Cosmo.facts(document.getElementById("fill"), [
        ["Fill rate now", Cosmo.pct(s.fill_rate)],
        ["Units made", s.units_made + " of " + s.units_ordered + " ordered"],
      ]);
      var r = s.reality;
      Cosmo.facts(document.getElementById("reality"), [
        ["Units planned on time", String(r.units_planned_on_time)],
        ["Of those, arrived", String(r.units_planned_on_time_arrived)],
        ["Planned on time, arrived late", String(r.units_planned_on_time_arrived_late)],
        ["Why late", Object.keys(r.late_by_cause).map(function (c) {
          return c + ": " + r.late_by_cause[c];
        }).join("; ") || "–"],
      ]);
      var points = s.fill_rate_over_time.filter(function (p) { return p.fill_rate !== null; });
      var trace = {type: "scatter", mode: "lines", line: {shape: "hv", color: "#1d6b32", width: 2},
        x: points.map(function (p) { return p.at; }), y: points.map(function (p) { return p.fill_rate; }),
        hovertemplate: "%{y:.1%} at %{x}<extra></extra>"};
      var layout = {margin: {l: 50, r: 10, t: 10, b: 40}, yaxis: {range: [0, 1.02], tickformat: ".0%"},
        xaxis: {type: "date"}};
      var node = document.getElementById("fill-chart");
      if (drawn) Plotly.react(node, [trace], layout, Cosmo.PLOT_CONFIG);
      else Plotly.newPlot(node, [trace], layout, Cosmo.PLOT_CONFIG);
      drawn = true;
    }, function (error) {
      Cosmo.showError(document.getElementById("network-error"), "Cannot load the figures: " + error.message);
    });
  }

  var peersDrawn = false;

  /* The peer regions: live or lost, the coordinator, and the units that flow between regions. */
  function loadPeers() {
    return Cosmo.api("/federation").then(function (f) {
      document.getElementById("peers-section").hidden = false;
      Cosmo.facts(document.getElementById("peers"), [
        ["This region", f.region],
        ["Coordinator of the rounds", f.coordinator],
        ["Peers live", f.live.join(", ") || "–"],
        ["Peers lost", f.lost.join(", ") || "–"],
        ["Latest round", String(f.round)],
        ["Orders whose units were in a bid", Cosmo.pct(f.orders_exposed_share)],
      ]);
      Cosmo.fillTable(document.getElementById("flows"), f.flows.map(function (flow) {
        return Cosmo.el("tr", {}, Cosmo.el("td", {}, flow.host), Cosmo.el("td", {}, flow.origin),
          Cosmo.el("td", {}, String(flow.units)), Cosmo.el("td", {}, String(flow.units_done)));
      }));
      var names = Object.keys(f.places);
      var traces = f.flows.filter(function (flow) {
        return f.places[flow.host] && f.places[flow.origin];
      }).map(function (flow) {
        var a = f.places[flow.host], b = f.places[flow.origin];
        return {type: "scattergeo", mode: "lines", lat: [a.lat, b.lat], lon: [a.lon, b.lon], showlegend: false,
          line: {width: 1 + Math.min(10, Math.sqrt(flow.units)), color: "#0b4f8a"}, opacity: 0.6,
          hoverinfo: "text", text: flow.units + " units from " + flow.host + " for " + flow.origin};
      });
      traces.push({type: "scattergeo", mode: "markers+text", name: "regions", textposition: "top center",
        lat: names.map(function (n) { return f.places[n].lat; }),
        lon: names.map(function (n) { return f.places[n].lon; }), text: names, hoverinfo: "text",
        marker: {size: 12, color: names.map(function (n) {
          return n === f.region ? "#b34700" : (f.lost.indexOf(n) >= 0 ? "#6b6b6b" : "#1d6b32");
        })}});
      // The world outlines are the only ones served offline (static/README.md): frame the regions on them.
      var lats = names.map(function (n) { return f.places[n].lat; });
      var lons = names.map(function (n) { return f.places[n].lon; });
      var around = function (values, least) {
        var min = Math.min.apply(null, values), max = Math.max.apply(null, values);
        var pad = Math.max(least - (max - min), 0) / 2 + (max - min) * 0.15;
        return [min - pad, max + pad];
      };
      var layout = {margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: false,
        geo: {scope: "world", resolution: 110, projection: {type: "mercator"}, showland: true,
          landcolor: "#eef0ea", showcountries: true, countrycolor: "#7d857d", showcoastlines: false,
          showframe: false, bgcolor: "#f8fbff"}};
      if (names.length) {
        layout.geo.lataxis = {range: around(lats, 6)};
        layout.geo.lonaxis = {range: around(lons, 9)};
      }
      var node = document.getElementById("peer-map");
      if (peersDrawn) Plotly.react(node, traces, layout, Cosmo.PLOT_CONFIG);
      else Plotly.newPlot(node, traces, layout, Cosmo.PLOT_CONFIG);
      peersDrawn = true;
    }, function (error) {
      if (error.status !== 404) {
        Cosmo.showError(document.getElementById("network-error"), "Cannot load the peers: " + error.message);
      }
    });
  }

  var refresh = Cosmo.debounce(function () { load(); loadPeers(); }, 500);
  load();
  loadPeers();
  Cosmo.live(function (kind) {
    if (kind === "stream.open" || kind === "plan.committed" || kind.indexOf("job.") === 0 || kind === "order.created") refresh();
  }, "/network/events");
})();
