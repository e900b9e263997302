/* A lab's operator page: jobs to accept or refuse, the planner's view of the machine schedule,
   free stock, trails and their history. The token from ?token= is kept for this tab only
   (sessionStorage), taken out of the address bar, and sent as a bearer header. */
"use strict";

(function () {
  var el = Cosmo.el;
  var labId = document.getElementById("lab-page").getAttribute("data-lab-id");
  var key = "cosmolocal-token-" + labId;
  var params = new URLSearchParams(window.location.search);
  if (params.get("token")) {
    sessionStorage.setItem(key, params.get("token"));
    params.delete("token");
    var rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }
  var token = sessionStorage.getItem(key) || "";
  var auth = {Authorization: "Bearer " + token};
  var labPath = "/labs/" + encodeURIComponent(labId);
  var ganttDrawn = false;

  function load() {
    return Promise.all([Cosmo.api(labPath + "/jobs", {headers: auth}), Cosmo.api(labPath),
      Cosmo.api(labPath + "/trails")]).then(function (r) {
      Cosmo.showError(document.getElementById("auth-error"), "");
      jobs(r[0].jobs);
      gantt(r[0].schedule);
      stock(r[1]);
      transfers(r[1].transfers || {outgoing: [], incoming: []});
      trails(r[2]);
    }, function (error) {
      var hint = error.status === 401 || error.status === 403
        ? " Open this page with the link holding your lab's operator token (…?token=…)." : "";
      Cosmo.showError(document.getElementById("auth-error"), error.message + "." + hint);
    });
  }

  function describe(job) {
    return job.quantity + " × " + (job.design_name || job.design) + " for order " + job.order_id;
  }

  function offer(job) {
    var reasonId = "reason-" + job.id;
    var errorId = reasonId + "-error";
    var reason = el("input", {id: reasonId, type: "text", maxlength: "500", "aria-describedby": errorId});
    var error = el("p", {class: "error", id: errorId, hidden: true});
    function decide(accept) {
      Cosmo.showError(error, "");
      reason.removeAttribute("aria-invalid");
      var why = reason.value.trim();
      if (!accept && !why) {
        reason.setAttribute("aria-invalid", "true");
        Cosmo.showError(error, "Say why the lab refuses: the planner and the hospital read it.");
        reason.focus();
        return;
      }
      var status = document.getElementById("decision-status");
      status.textContent = (accept ? "Accepting " : "Refusing ") + job.id + "…";
      Cosmo.api(labPath + "/jobs/" + encodeURIComponent(job.id) + "/decision",
        {method: "POST", headers: auth, body: {accept: accept, reason: why}}).then(function () {
        status.textContent = (accept ? "Accepted " : "Refused ") + job.id + "; waiting for the lab to confirm.";
      }, function (e) {
        if (Array.isArray(e.detail)) reason.setAttribute("aria-invalid", "true");
        Cosmo.showError(error, e.message);
        status.textContent = "";
      });
    }
    return el("article", {class: "offer", "data-assignment": job.id, "aria-labelledby": "offer-" + job.id},
      el("h3", {id: "offer-" + job.id}, describe(job)),
      el("p", {}, "Due " + Cosmo.when(job.due_at) + ", " + job.priority + "; deliver to " +
        (job.delivery_place || "the order's place") + ", " + Cosmo.num(job.km) + " km away; about " +
        Cosmo.num(job.minutes_per_unit * job.quantity / 60) + " machine-hours."),
      el("div", {class: "actions"},
        el("button", {type: "button", class: "accept", onclick: function () { decide(true); }}, "Accept"),
        el("div", {class: "field"}, el("label", {for: reasonId}, "Reason to refuse"), reason, error),
        el("button", {type: "button", class: "secondary refuse", onclick: function () { decide(false); }}, "Refuse")));
  }

  function reportable(list) {
    var select = document.getElementById("report-job");
    var chosen = select.value;
    var open = list.filter(function (j) { return j.state === "accepted" || j.state === "running"; });
    select.replaceChildren.apply(select, open.map(function (j) {
      return el("option", {value: j.id}, j.id + ": " + j.units_done + " of " + j.quantity + " made");
    }));
    if (chosen) select.value = chosen;
    select.disabled = open.length === 0;
  }

  document.getElementById("report-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var error = document.getElementById("report-error");
    var status = document.getElementById("report-status");
    var job = document.getElementById("report-job").value;
    var body = {made: Number(document.getElementById("report-made").value) || 0,
      failed: Number(document.getElementById("report-failed").value) || 0,
      reason: document.getElementById("report-reason").value.trim()};
    Cosmo.showError(error, "");
    if (!job) { Cosmo.showError(error, "No job is under way."); return; }
    status.textContent = "Reporting on " + job + "…";
    Cosmo.api(labPath + "/jobs/" + encodeURIComponent(job) + "/report",
      {method: "POST", headers: auth, body: body}).then(function () {
      status.textContent = "Reported on " + job + "; the lab counts it and tells the planner.";
      document.getElementById("report-made").value = "0";
      document.getElementById("report-failed").value = "0";
    }, function (e) {
      Cosmo.showError(error, e.message);
      status.textContent = "";
    });
  });

  function jobs(list) {
    reportable(list);
    var awaiting = document.getElementById("awaiting");
    var open = list.filter(function (j) { return j.awaiting_decision; });
    // Keep the offers being typed into; only add new ones and drop answered ones.
    var shown = {};
    Array.prototype.forEach.call(awaiting.querySelectorAll("article.offer"), function (node) {
      shown[node.getAttribute("data-assignment")] = node;
    });
    var ids = open.map(function (j) { return j.id; });
    Object.keys(shown).forEach(function (id) { if (ids.indexOf(id) < 0) shown[id].remove(); });
    open.forEach(function (j) { if (!shown[j.id]) awaiting.appendChild(offer(j)); });
    var empty = awaiting.querySelector(".empty");
    if (!open.length && !empty) awaiting.appendChild(el("p", {class: "empty"}, "No job is waiting for an answer."));
    if (open.length && empty) empty.remove();
    Cosmo.fillTable(document.getElementById("jobs"), list.map(function (j) {
      return el("tr", {"data-assignment": j.id, "data-state": j.state},
        el("td", {}, j.id), el("td", {}, j.design_name || j.design || "–"), el("td", {}, String(j.quantity)),
        el("td", {}, Cosmo.progress(j.units_done, j.quantity, "units made of " + j.id)),
        el("td", {}, Cosmo.stateWord(j.state)), el("td", {}, Cosmo.when(j.due_at)),
        el("td", {}, (j.delivery_place || "–") + " (" + Cosmo.num(j.km) + " km)"), el("td", {}, j.reason || ""));
    }));
  }

  function gantt(schedule) {
    document.getElementById("schedule-note").textContent = schedule.note;
    var node = document.getElementById("gantt");
    var bars = schedule.bars;
    var empty = document.getElementById("gantt-empty");
    empty.hidden = bars.length > 0;
    node.hidden = bars.length === 0;
    if (!bars.length) return;
    var trace = {
      type: "bar", orientation: "h",
      y: bars.map(function (b) { return b.machine; }),
      base: bars.map(function (b) { return b.start; }),
      x: bars.map(function (b) { return Math.max(60000, new Date(b.end) - new Date(b.start)); }),
      text: bars.map(function (b) { return b.assignment_id; }),
      hovertext: bars.map(function (b) {
        return b.assignment_id + ": " + b.quantity + " × " + b.design + ", " + b.units_done + " made, " +
          b.state + "<br>" + Cosmo.when(b.start) + " → " + Cosmo.when(b.end);
      }),
      hoverinfo: "text", textposition: "inside", insidetextanchor: "start",
      marker: {color: bars.map(function (b) { return b.state === "done" ? "#1d6b32" : "#0b4f8a"; })},
    };
    var layout = {margin: {l: 90, r: 10, t: 10, b: 40}, barmode: "overlay", showlegend: false,
      xaxis: {type: "date", title: {text: "time"}},
      yaxis: {type: "category", categoryarray: schedule.machines, categoryorder: "array", automargin: true}};
    if (ganttDrawn) Plotly.react(node, [trace], layout, Cosmo.PLOT_CONFIG);
    else Plotly.newPlot(node, [trace], layout, Cosmo.PLOT_CONFIG);
    ganttDrawn = true;
  }

  function stock(lab) {
    document.getElementById("lab-name").textContent = lab.name + (lab.live ? "" : " (not connected)");
    var free = lab.free_stock || {};
    Cosmo.fillTable(document.getElementById("stock"), Object.keys(free).sort().map(function (m) {
      return el("tr", {}, el("td", {}, m), el("td", {}, Cosmo.num(free[m], 3)));
    }));
  }

  function transfers(both) {
    var rows = both.outgoing.map(function (t) { return [t, "outgoing", t.to_lab]; }).concat(
      both.incoming.map(function (t) { return [t, "incoming", t.from_lab]; }));
    document.getElementById("transfers-empty").hidden = rows.length > 0;
    Cosmo.fillTable(document.getElementById("transfers"), rows.map(function (row) {
      var t = row[0];
      return el("tr", {}, el("td", {}, t.id), el("td", {}, row[1]), el("td", {}, t.material),
        el("td", {}, Cosmo.num(t.quantity, 3)), el("td", {}, row[2]), el("td", {}, Cosmo.when(t.arrive_at)),
        el("td", {}, t.state), el("td", {}, t.reason || ""));
    }));
  }

  function trails(view) {
    Cosmo.fillTable(document.getElementById("trails"), view.trails.map(function (t) {
      return el("tr", {}, el("td", {}, t.design), el("td", {}, Cosmo.num(t.tau, 3)),
        el("td", {}, Cosmo.num(t.design_mean, 3)), el("td", {}, Cosmo.pct(t.strength)),
        el("td", {}, Cosmo.num(t.discount_km_per_unit, 2)), el("td", {}, Cosmo.pct(t.discount_share_of_trip)));
    }));
    var list = document.getElementById("trail-history");
    var items = view.history.slice().reverse().slice(0, 50).map(function (h) {
      return el("li", {}, Cosmo.when(h.at) + ": " + h.design + " " + Cosmo.num(h.before, 3) + " → " +
        Cosmo.num(h.tau, 3) + " (" + h.cause + ")");
    });
    if (!items.length) items.push(el("li", {}, "No trail change yet."));
    list.replaceChildren.apply(list, items);
  }

  var refresh = Cosmo.debounce(load, 250);
  load();
  Cosmo.live(function (kind, data) {
    if (data.lab_id === labId || kind === "plan.committed" || kind === "stream.open") refresh();
  }, "/events?token=" + encodeURIComponent(token));
})();
