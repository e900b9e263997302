/* A rate's page: its need (days until met, or the shortfall), its releases ordered and forecast; live. */
"use strict";

(function () {
  var el = Cosmo.el;
  var rateId = document.getElementById("rate-page").getAttribute("data-rate-id");
  var path = "/rates/" + encodeURIComponent(rateId);

  function load() {
    return Cosmo.api(path).then(function (rate) {
      Cosmo.showError(document.getElementById("rate-error"), "");
      show(rate);
    }, function (error) {
      Cosmo.showError(document.getElementById("rate-error"), "Cannot load the rate: " + error.message);
    });
  }

  function show(rate) {
    var need = rate.need;
    var page = document.getElementById("rate-page");
    page.setAttribute("data-days-until-met", need.days_until_met === null ? "never" : String(need.days_until_met));
    Cosmo.facts(document.getElementById("summary"), [
      ["State", rate.state],
      ["Design", rate.design],
      ["Units a day", Cosmo.num(rate.units_per_day)],
      ["Until", Cosmo.when(rate.until)],
      ["Each day's units due after", Cosmo.num(rate.due_days) + " days"],
      ["Priority", rate.priority],
      ["Delivery", rate.delivery.place || (rate.delivery.lat + ", " + rate.delivery.lon)],
      ["Days until this need is met", need.days_until_met === null
        ? "not within the plan: " + need.shortfall + " units short by " + Cosmo.when(rate.window_end)
        : Cosmo.num(need.days_until_met, 1) + " days"],
      ["Units ordered so far", String(rate.units_released)],
      ["Units forecast (next " + Cosmo.num(rate.forecast_days) + " days)", String(rate.units_forecast)],
    ]);
    Cosmo.fillTable(document.getElementById("releases"), rate.releases.map(function (r) {
      var name = r.state === "forecast" ? r.order_id + " (forecast)"
        : el("a", {href: "/order/" + encodeURIComponent(r.order_id)}, r.order_id);
      return el("tr", {"data-state": r.state},
        el("td", {}, name),
        el("td", {}, Cosmo.when(r.release_at)),
        el("td", {}, Cosmo.when(r.due_at)),
        el("td", {}, String(r.units)),
        el("td", {}, String(r.units_made)),
        el("td", {}, r.state === "forecast" ? "forecast" : Cosmo.stateWord(r.state)));
    }));
  }

  var refresh = Cosmo.debounce(load, 500);
  load();
  Cosmo.live(function (kind) {
    if (kind === "stream.open" || kind === "plan.committed" || kind.indexOf("job.") === 0 || kind === "order.created") refresh();
  }, "/network/events");
})();
