/* An order's status page: allocations per lab with progress and ETA, why those labs, live. */
"use strict";

(function () {
  var el = Cosmo.el;
  var orderId = document.getElementById("order-page").getAttribute("data-order-id");
  var path = "/orders/" + encodeURIComponent(orderId);

  function load() {
    return Promise.all([Cosmo.api(path), Cosmo.api(path + "/explanation")]).then(function (r) {
      Cosmo.showError(document.getElementById("order-error"), "");
      show(r[0]);
      reality(r[0]);
      explain(r[1]);
    }, function (error) {
      Cosmo.showError(document.getElementById("order-error"), "Cannot load the order: " + error.message);
    });
  }

  function show(order) {
    var page = document.getElementById("order-page");
    page.setAttribute("data-state", order.state);
    page.setAttribute("data-labs", order.allocations
      .filter(function (a) { return a.state !== "refused" && a.state !== "failed"; })
      .map(function (a) { return a.lab_id; }).join(" "));
    var etas = order.allocations.map(function (a) { return a.eta; }).filter(Boolean).sort();
    Cosmo.facts(document.getElementById("summary"), [
      ["State", Cosmo.stateWord(order.state)],
      ["Design", order.design],
      ["Quantity", String(order.quantity)],
      ["Priority", order.priority],
      ["Needed by", Cosmo.when(order.due_at)],
      ["Delivery", order.delivery.place || (order.delivery.lat + ", " + order.delivery.lon)],
      ["Expected finish (latest lab ETA)", order.state === "done" ? "done" : Cosmo.when(etas[etas.length - 1])],
    ]);
    var overall = document.getElementById("overall");
    overall.max = Math.max(1, order.quantity);
    overall.value = order.units_made;
    document.getElementById("overall-text").textContent = order.units_made + " of " + order.quantity;
    var shortage = document.getElementById("shortage");
    shortage.hidden = !order.shortage;
    if (order.shortage) {
      shortage.textContent = "Not enough capacity or stock in reach right now for " +
        order.shortage.quantity + " units: they stay in demand and are planned as soon as labs can.";
    }
    Cosmo.fillTable(document.getElementById("allocations"), order.allocations.map(function (a) {
      var cost = a.cost || {};
      return el("tr", {"data-assignment": a.id, "data-state": a.state},
        el("td", {}, a.lab_name + (a.lab_place ? " (" + a.lab_place + ")" : "")),
        el("td", {}, String(a.quantity)),
        el("td", {}, Cosmo.progress(a.units_done, a.quantity, "units made at " + a.lab_name)),
        el("td", {}, Cosmo.stateWord(a.state) + (a.reason ? ": " + a.reason : "")),
        el("td", {}, a.state === "done" ? "done" : Cosmo.when(a.eta)),
        el("td", {}, Cosmo.num(cost.km) + " km; transport " + Cosmo.num(cost.transport) + ", setup " +
          Cosmo.num(cost.setup) + ", lateness " + Cosmo.num(cost.lateness) + ", trail " + Cosmo.num(cost.trail)));
    }));
  }

  function reality(order) {
    var r = order.reality;
    Cosmo.facts(document.getElementById("reality"), [
      ["Units planned on time", String(r.units_planned_on_time)],
      ["Of those, arrived", String(r.units_planned_on_time_arrived)],
      ["Planned on time, arrived late", String(r.units_planned_on_time_arrived_late)],
      ["Why late", Object.keys(r.late_by_cause).map(function (c) {
        return c + ": " + r.late_by_cause[c];
      }).join("; ") || "–"],
    ]);
    Cosmo.fillTable(document.getElementById("reality-lines"), order.allocations.map(function (a) {
      return el("tr", {"data-assignment": a.id, "data-late": String(a.units_planned_on_time_arrived_late)},
        el("td", {}, a.lab_name),
        el("td", {}, Cosmo.when(a.arrive_by)),
        el("td", {}, String(a.on_time_units)),
        el("td", {}, a.finished_at ? Cosmo.when(a.finished_at) : "–"),
        el("td", {}, a.arrived_at ? Cosmo.when(a.arrived_at) : "–"),
        el("td", {}, String(a.units_planned_on_time_arrived_late)),
        el("td", {}, a.late_cause || "–"));
    }));
  }

  function explain(verdicts) {
    var list = document.getElementById("explanation");
    list.replaceChildren.apply(list, verdicts.map(function (v) {
      return el("li", {"data-lab": v.lab_id},
        el("span", {class: v.chosen ? "chosen" : "not-chosen"}, v.chosen ? "Chosen: " : "Not chosen: "),
        v.lab_name + " (" + Cosmo.num(v.km) + " km)" + (v.chosen ? ", " + v.units + " units. " : ". "),
        v.why, v.what_would_change ? el("span", {}, " What would change it: " + v.what_would_change) : null);
    }));
  }

  var refresh = Cosmo.debounce(load, 250);
  load();
  Cosmo.live(function (kind, data) {
    if (data.order_id === orderId || data.id === orderId || kind === "plan.committed" || kind === "stream.open") refresh();
  }, path + "/events");
})();
