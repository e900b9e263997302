/* The order form: shows what the chosen design needs, posts the order, puts each error next to
   its field (aria-invalid + aria-describedby), then opens the order's status page. */
"use strict";

(function () {
  var form = document.getElementById("order-form");
  var design = document.getElementById("design");
  var FIELDS = ["design", "quantity", "due_at", "priority", "place", "lat", "lon", "token"];
  document.getElementById("token").value = Cosmo.requesterToken();

  function showDesign() {
    document.querySelectorAll(".design-detail").forEach(function (node) {
      node.hidden = node.getAttribute("data-design") !== design.value;
    });
  }
  design.addEventListener("change", showDesign);
  showDesign();

  var due = document.getElementById("due_at");
  if (!due.value) {
    var d = new Date(Date.now() + 3 * 24 * 3600 * 1000);
    d.setMinutes(0, 0, 0);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    due.value = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function clearErrors() {
    FIELDS.forEach(function (name) {
      document.getElementById(name).removeAttribute("aria-invalid");
      Cosmo.showError(document.getElementById(name + "-error"), "");
    });
    Cosmo.showError(document.getElementById("form-error"), "");
  }

  /** The form field an API error location (["body", "delivery", "lat"]) concerns. */
  function fieldOf(loc) {
    var path = (loc || []).filter(function (p) { return p !== "body"; });
    if (path[0] === "delivery") return path[1] === "lat" || path[1] === "lon" ? path[1] : "place";
    return FIELDS.indexOf(path[0]) >= 0 ? path[0] : null;
  }

  function numberOrNull(id) {
    var value = document.getElementById(id).value.trim();
    return value === "" ? null : Number(value);
  }

  function body() {
    var dueValue = due.value;
    var dueDate = new Date(dueValue);
    var place = document.getElementById("place").value.trim();
    var quantity = numberOrNull("quantity");
    return {
      design: design.value,
      quantity: quantity === null ? null : quantity,
      due_at: dueValue && !isNaN(dueDate.getTime()) ? dueDate.toISOString() : dueValue,
      priority: document.getElementById("priority").value,
      delivery: {lat: numberOrNull("lat"), lon: numberOrNull("lon"), place: place || null},
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    var button = document.getElementById("submit");
    var status = document.getElementById("form-status");
    var first = null, general = [];
    button.disabled = true;
    status.textContent = "Placing the order…";
    var token = document.getElementById("token").value.trim();
    var options = {method: "POST", body: body()};
    if (token) options.headers = {Authorization: "Bearer " + token};
    Cosmo.api("/orders", options).then(function (order) {
      if (token) Cosmo.rememberToken(token);
      status.textContent = "Order " + order.id + " placed. Opening its status page.";
      window.location.assign("/order/" + encodeURIComponent(order.id));
    }, function (error) {
      button.disabled = false;
      status.textContent = "";
      if (Array.isArray(error.detail)) {
        error.detail.forEach(function (d) {
          var name = fieldOf(d.loc);
          if (!name) { general.push(d.msg); return; }
          var input = document.getElementById(name);
          var message = document.getElementById(name + "-error");
          input.setAttribute("aria-invalid", "true");
          message.textContent = message.hidden ? d.msg : message.textContent + "; " + d.msg;
          message.hidden = false;
          if (!first) first = input;
        });
      } else if (error.status === 401) {
        var tokenInput = document.getElementById("token");
        var tokenError = document.getElementById("token-error");
        tokenInput.setAttribute("aria-invalid", "true");
        tokenError.textContent = token ? "This token is not accepted: " + error.message
          : "This planner takes orders with a requester token: ask its operator for one.";
        tokenError.hidden = false;
        first = tokenInput;
        general.push(tokenError.textContent);
      } else {
        general.push(error.message);
      }
      var count = error.detail && Array.isArray(error.detail) ? error.detail.length : 1;
      Cosmo.showError(document.getElementById("form-error"), general.length
        ? "The order was not placed: " + general.join("; ")
        : "The order was not placed: " + count + " field" + (count > 1 ? "s need" : " needs") +
          " correcting (see below).");
      (first || design).focus();
    });
  });
})();
