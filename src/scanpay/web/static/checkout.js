// Live order status on the checkout page: Server-Sent Events first, polling as fallback.
(function () {
  "use strict";
  var el = document.getElementById("order-status");
  if (!el) { return; }
  var orderId = el.getAttribute("data-order-id");
  var pollMs = parseInt(el.getAttribute("data-poll-ms"), 10) || 2000;
  var texts = JSON.parse(el.getAttribute("data-texts") || "{}");
  var banner = document.getElementById("paid-banner");
  var source = null;
  var pollTimer = null;

  function settled(status) { return status !== "pending"; }

  function show(status) {
    if (!status || el.getAttribute("data-status") === status) { return; }
    el.setAttribute("data-status", status);
    el.textContent = texts[status] || status;
    document.body.setAttribute("data-order-status", status);
    if (banner) { banner.hidden = status !== "paid"; }
    if (settled(status)) { stop(); }
  }

  function stop() {
    if (source) { source.close(); source = null; }
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
  }

  function poll() {
    pollTimer = null;
    fetch("/api/orders/" + encodeURIComponent(orderId), { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (order) { if (order) { show(order.status); } })
      .catch(function () { /* network hiccup: the next poll tries again */ })
      .then(function () {
        if (!settled(el.getAttribute("data-status")) && pollTimer === null) {
          pollTimer = setTimeout(poll, pollMs);
        }
      });
  }

  function startPolling() {
    if (source) { source.close(); source = null; }
    if (pollTimer === null) { pollTimer = setTimeout(poll, pollMs); }
  }

  if (settled(el.getAttribute("data-status"))) { return; }
  if (!window.EventSource) { startPolling(); return; }
  source = new EventSource("/api/orders/" + encodeURIComponent(orderId) + "/events");
  source.onmessage = function (e) {
    try { show(JSON.parse(e.data).status); } catch (err) { /* ignore a bad frame */ }
  };
  source.onerror = function () {
    // The stream ended (order settled) or broke: polling keeps the page honest either way.
    if (!settled(el.getAttribute("data-status"))) { startPolling(); } else { stop(); }
  };
})();
