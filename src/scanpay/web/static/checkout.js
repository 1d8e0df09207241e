// The checkout page, kept current without reloads.
// - Status: Server-Sent Events first, polling GET /api/orders/{id} as the fallback.
// - QR: when its known expiry passes, or the stream reports an attempt change, the page asks
//   GET /checkout/{id}/qr (which replaces an expired attempt) and swaps the SVG and phone link.
// - Settled: the QR is removed; "Paid" (or closed / expired) and "Back to shop" are shown.
(function () {
  "use strict";
  var el = document.getElementById("order-status");
  if (!el) { return; }
  var orderId = el.getAttribute("data-order-id");
  var base = "/checkout/" + encodeURIComponent(orderId);
  var pollMs = parseInt(el.getAttribute("data-poll-ms"), 10) || 2000;
  var texts = JSON.parse(el.getAttribute("data-texts") || "{}");
  var root = document.getElementById("checkout");
  var qr = document.getElementById("qr");
  var note = document.getElementById("qr-note");
  var newQr = document.getElementById("new-qr");
  var panels = {
    pay: document.getElementById("pay-panel"),
    paid: document.getElementById("paid-banner"),
    closed: document.getElementById("closed-banner"),
    expired: document.getElementById("expired-banner")
  };
  var back = document.getElementById("return-link");
  var ATTEMPT_EVENTS = { attempt_closed: 1, attempt_failed: 1, created: 1, qr_ready: 1 };
  var PAID = { paid: 1, partially_refunded: 1, refunded: 1 };
  var source = null, pollTimer = null, expiryTimer = null, retryTimer = null;
  var fetching = false, again = false, retryMs = 2000;

  function current() { return el.getAttribute("data-status"); }
  function settled(status) { return status !== "pending"; }

  function show(status) {
    if (!status || current() === status) { return; }
    el.setAttribute("data-status", status);
    el.textContent = texts[status] || status;
    root.setAttribute("data-status", status);
    if (!settled(status)) { return; }
    stop();
    if (qr) { qr.textContent = ""; }  // nothing left to scan
    panels.pay.hidden = true;
    panels.paid.hidden = !PAID[status];
    panels.closed.hidden = status !== "closed";
    panels.expired.hidden = status !== "expired";
    if (back) { back.hidden = false; }
  }

  function stop() {
    if (source) { source.close(); source = null; }
    [pollTimer, expiryTimer, retryTimer].forEach(function (t) { if (t) { clearTimeout(t); } });
    pollTimer = expiryTimer = retryTimer = null;
  }

  // ---- the QR ---------------------------------------------------------------------------

  function stale(text) {
    qr.classList.add("qr-stale");
    note.textContent = text;
    newQr.hidden = false;
  }

  function scheduleExpiry(ms) {
    if (expiryTimer) { clearTimeout(expiryTimer); expiryTimer = null; }
    if (ms === null || isNaN(ms)) { return; }
    // a second late: the server decides by its own clock whether the window is over
    expiryTimer = setTimeout(function () {
      expiryTimer = null;
      stale("This QR code has run out. Getting a new one…");
      refreshQr();
    }, Math.max(ms, 0) + 1000);
  }

  function applyQr(state) {
    if (settled(state.status)) { show(state.status); return; }
    if (!state.qr_svg) {
      stale("Getting a new QR code…");
      if (!retryTimer) {  // no payable code right now (WeChat slow?): ask again, backing off
        retryTimer = setTimeout(function () { retryTimer = null; refreshQr(); }, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
      return;
    }
    retryMs = 2000;
    if (qr.getAttribute("data-out-trade-no") !== state.out_trade_no || qr.classList.contains("qr-stale")) {
      qr.innerHTML = state.qr_svg;  // server-drawn SVG (no script); CSP forbids inline code anyway
      qr.setAttribute("data-out-trade-no", state.out_trade_no);
      qr.classList.remove("qr-stale", "qr-waiting");
      note.textContent = "A new QR code: scan this one.";
      newQr.hidden = true;
      var phone = document.getElementById("phone-link");
      if (phone && state.phone_url) { phone.setAttribute("href", state.phone_url); }
      root.setAttribute("data-qr-refreshed", state.out_trade_no);
    }
    scheduleExpiry(state.expires_in_ms);
  }

  function refreshQr() {
    if (settled(current())) { return; }
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(base + "/qr", { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (state) { applyQr(state); } else { stale("Could not get a new QR code. Try the button."); }
      })
      .catch(function () { stale("Could not reach the shop. Try the button."); })
      .then(function () {
        fetching = false;
        if (again) { again = false; refreshQr(); }
      });
  }

  // ---- the status -----------------------------------------------------------------------

  function poll() {
    pollTimer = null;
    fetch("/api/orders/" + encodeURIComponent(orderId), { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (order) {
        if (!order) { return; }
        show(order.status);
        if (!settled(order.status) && order.out_trade_no !== qr.getAttribute("data-out-trade-no")) {
          refreshQr();
        }
      })
      .catch(function () { /* network hiccup: the next poll tries again */ })
      .then(function () {
        if (!settled(current()) && pollTimer === null) { pollTimer = setTimeout(poll, pollMs); }
      });
  }

  function startPolling() {
    if (source) { source.close(); source = null; }
    if (pollTimer === null) { pollTimer = setTimeout(poll, pollMs); }
  }

  if (settled(current())) { return; }
  newQr.addEventListener("click", function () { retryMs = 2000; refreshQr(); });
  if (qr.classList.contains("qr-waiting")) {
    refreshQr();
  } else {
    scheduleExpiry(parseInt(qr.getAttribute("data-expires-in-ms"), 10));
  }
  if (!window.EventSource) { startPolling(); return; }
  source = new EventSource("/api/orders/" + encodeURIComponent(orderId) + "/events");
  source.onmessage = function (e) {
    var message;
    try { message = JSON.parse(e.data); } catch (err) { return; /* ignore a bad frame */ }
    show(message.status);
    if (!settled(message.status) && ATTEMPT_EVENTS[message.type]) { refreshQr(); }
  };
  source.onerror = function () {
    // The stream ended (order settled) or broke: polling keeps the page honest either way.
    if (!settled(current())) { startPolling(); } else { stop(); }
  };
})();
