// The checkout page, kept current without reloads (scanpay.web.pages describes the faces).
// - Status: a Server-Sent Events stream read with fetch, so a reconnect can send Last-Event-ID
//   and resume where it stopped. A dropped stream is followed by a status check and a new
//   stream (retries every 0.5-1.5 s); while the service cannot be reached, "connection lost"
//   shows. The page re-checks at once when the network ("online") or the tab comes back.
// - QR: a countdown from the server's remaining time; when it runs out, or the stream reports
//   an attempt change, GET /checkout/{id}/qr (which replaces an expired attempt) and swap the
//   SVG in place, with a visible notice.
// - Paid: the receipt (from the same endpoint), focus on the result, then back to the shop.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) { return; }
  var $ = function (id) { return document.getElementById(id); };
  var el = $("order-status");
  var orderId = root.getAttribute("data-order-id");
  var lang = root.getAttribute("data-lang") || "";
  var base = "/checkout/" + encodeURIComponent(orderId);
  var api = "/api/orders/" + encodeURIComponent(orderId);
  var pollMs = parseInt(root.getAttribute("data-poll-ms"), 10) || 2000;
  var texts = JSON.parse(root.getAttribute("data-texts") || "{}");
  var returnUrl = root.getAttribute("data-return-url");
  var returnSeconds = parseInt(root.getAttribute("data-return-seconds"), 10) || 8;
  var qr = $("qr"), notice = $("qr-notice"), newQr = $("new-qr");
  var countdown = $("countdown"), countdownLine = $("countdown-line");
  var panels = {
    pay: $("pay-panel"), paid: $("paid-banner"), closed: $("closed-banner"), expired: $("expired-banner")
  };
  var ATTEMPT_EVENTS = { attempt_closed: 1, attempt_failed: 1, created: 1, qr_ready: 1 };
  var PAID = { paid: 1, partially_refunded: 1, refunded: 1 };
  var JSON_HEADERS = { "Accept": "application/json" };
  var stream = null, lastEventId = null, retryTimer = null, retryMs = 500, watchdog = null;
  var expiryTimer = null, tickTimer = null, qrRetryTimer = null, qrRetryMs = 2000;
  var fetching = false, again = false, deadline = null;

  function current() { return el.getAttribute("data-status"); }
  function settled(status) { return status !== "pending"; }
  function clock() { return window.performance ? performance.now() : Date.now(); }

  // ---- faces ----------------------------------------------------------------------------

  function show(status) {
    if (!status || current() === status) { return; }
    el.setAttribute("data-status", status);
    el.textContent = texts[status] || status;  // the one live region: announced once
    root.setAttribute("data-status", status);
    if (!settled(status)) { return; }
    stopAll();
    if (qr) { qr.textContent = ""; }  // nothing left to scan
    panels.pay.hidden = true;
    panels.paid.hidden = !PAID[status];
    panels.closed.hidden = status !== "closed";
    panels.expired.hidden = status !== "expired";
    setConnection("done");
    if (PAID[status]) { paid(true); }
  }

  function paid(live) {
    if (live) {
      var title = $("paid-title");
      if (title) { title.focus(); }
      fetch(base + "/qr?lang=" + encodeURIComponent(lang), { headers: JSON_HEADERS })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (state) { if (state && state.receipt) { fillReceipt(state.receipt); } })
        .catch(function () { /* the receipt stays as rendered; the status is what matters */ });
    }
    startReturn();
  }

  function fillReceipt(receipt) {
    ["merchant", "amount", "out_trade_no", "transaction_id", "paid_at"].forEach(function (key) {
      var cell = $("receipt-" + key.replace(/_/g, "-"));
      if (cell && receipt[key]) { cell.textContent = receipt[key]; }
    });
    root.setAttribute("data-receipt", "ready");
  }

  function startReturn() {
    if (!returnUrl) { return; }
    var left = returnSeconds, out = $("return-seconds"), timer = null, stay = $("stay");
    var step = function () {
      if (out) { out.textContent = String(left); }
      if (left <= 0) { window.location.assign(returnUrl); return; }
      left -= 1;
      timer = setTimeout(step, 1000);
    };
    if (stay) {  // the time limit can be turned off (WCAG 2.2.1)
      stay.addEventListener("click", function () {
        if (timer) { clearTimeout(timer); timer = null; }
        $("return-note").hidden = true;
        stay.hidden = true;
        $("return-link").focus();
      });
    }
    step();
  }

  function stopAll() {
    if (stream) { var s = stream; stream = null; s.abort(); }
    [retryTimer, expiryTimer, tickTimer, qrRetryTimer, watchdog].forEach(function (t) {
      if (t) { clearTimeout(t); }
    });
    retryTimer = expiryTimer = tickTimer = qrRetryTimer = watchdog = null;
  }

  function setConnection(state) {
    root.setAttribute("data-connection", state);
    $("connection").hidden = state !== "lost";
  }

  // ---- the QR and its countdown ---------------------------------------------------------

  function note(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  function stale(text) {
    qr.classList.add("qr-stale");
    note(text);
    newQr.hidden = false;
    countdownLine.hidden = true;
  }

  function tick() {
    tickTimer = null;
    if (deadline === null) { return; }
    var left = Math.max(0, Math.ceil((deadline - clock()) / 1000));
    var mm = Math.floor(left / 60), ss = left % 60;
    countdown.textContent = (mm < 10 ? "0" : "") + mm + ":" + (ss < 10 ? "0" : "") + ss;
    var rest = (deadline - clock()) % 1000;
    if (left > 0) { tickTimer = setTimeout(tick, rest > 0 ? rest + 5 : 1000); }
  }

  function scheduleExpiry(ms) {
    if (expiryTimer) { clearTimeout(expiryTimer); expiryTimer = null; }
    if (tickTimer) { clearTimeout(tickTimer); tickTimer = null; }
    if (ms === null || ms === undefined || isNaN(ms)) { deadline = null; return; }
    deadline = clock() + Math.max(ms, 0);  // the server's remaining time, not this clock's date
    countdownLine.hidden = false;
    tick();
    // a second late: the server decides by its own clock whether the window is over
    expiryTimer = setTimeout(function () {
      expiryTimer = null;
      stale(texts.stale);
      refreshQr();
    }, Math.max(ms, 0) + 1000);
  }

  function applyQr(state) {
    if (settled(state.status)) { show(state.status); return; }
    if (!state.qr_svg) {
      stale(texts.waiting);
      if (!qrRetryTimer) {  // no payable code right now (WeChat slow?): ask again, backing off
        qrRetryTimer = setTimeout(function () { qrRetryTimer = null; refreshQr(); }, qrRetryMs);
        qrRetryMs = Math.min(qrRetryMs * 2, 30000);
      }
      return;
    }
    qrRetryMs = 2000;
    var previous = qr.getAttribute("data-out-trade-no");
    if (previous !== state.out_trade_no || qr.classList.contains("qr-stale")) {
      qr.innerHTML = state.qr_svg;  // server-drawn SVG (no script); CSP forbids inline code anyway
      qr.setAttribute("data-out-trade-no", state.out_trade_no);
      qr.classList.remove("qr-stale", "qr-waiting");
      $("out-trade-no").textContent = state.out_trade_no;
      note(previous && previous !== state.out_trade_no ? texts.replaced : "");
      newQr.hidden = true;
      var phone = $("phone-link");
      if (phone && state.phone_url) { phone.setAttribute("href", state.phone_url); }
      root.setAttribute("data-qr-refreshed", state.out_trade_no);
    }
    scheduleExpiry(state.expires_in_ms);
  }

  function refreshQr() {
    if (settled(current())) { return; }
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(base + "/qr?lang=" + encodeURIComponent(lang), { headers: JSON_HEADERS })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) { if (state) { applyQr(state); } else { stale(texts.failed); } })
      .catch(function () { stale(texts.failed); })
      .then(function () {
        fetching = false;
        if (again) { again = false; refreshQr(); }
      });
  }

  // ---- the status: stream, checks, reconnects ------------------------------------------

  function handle(message) {
    show(message.status);
    if (!settled(message.status) && ATTEMPT_EVENTS[message.type]) { refreshQr(); }
  }

  function frame(text) {
    var data = [], id = null;
    text.split(/\r?\n/).forEach(function (line) {
      if (line.indexOf("data:") === 0) { data.push(line.slice(5).replace(/^ /, "")); }
      else if (line.indexOf("id:") === 0) { id = line.slice(3).trim(); }
    });
    if (id !== null && id !== "") { lastEventId = id; }
    if (!data.length) { return; }
    try { handle(JSON.parse(data.join("\n"))); } catch (err) { /* ignore a bad frame */ }
  }

  function armWatchdog(ctl) {
    if (watchdog) { clearTimeout(watchdog); }
    // the service sends a keep-alive at least every 15 s; silence for longer means a dead link
    watchdog = setTimeout(function () { if (stream === ctl) { ctl.abort(); } }, 45000);
  }

  function connect() {
    if (stream || settled(current())) { return; }
    var ctl = new AbortController();
    stream = ctl;
    var headers = { "Accept": "text/event-stream" };
    if (lastEventId !== null) { headers["Last-Event-ID"] = lastEventId; }
    armWatchdog(ctl);
    fetch(api + "/events", { headers: headers, signal: ctl.signal, cache: "no-store" })
      .then(function (response) {
        if (!response.ok || !response.body) { throw new Error("HTTP " + response.status); }
        retryMs = 500;
        setConnection("stream");
        var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
        var pump = function () {
          return reader.read().then(function (chunk) {
            if (chunk.done) { return; }
            armWatchdog(ctl);
            buffer += decoder.decode(chunk.value, { stream: true });
            var frames = buffer.split(/\r?\n\r?\n/);
            buffer = frames.pop();
            frames.forEach(frame);
            return pump();
          });
        };
        return pump();
      })
      .catch(function () { /* a drop or a refusal: handled below */ })
      .then(function () {
        if (stream !== ctl) { return; }  // replaced or stopped on purpose
        stream = null;
        if (!settled(current())) { retry(); }
      });
  }

  function check() {
    // one status read: says whether the service is reachable and catches up meanwhile
    return fetch(api, { headers: JSON_HEADERS, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (order) {
        if (root.getAttribute("data-connection") === "lost") { setConnection("checking"); }
        show(order.status);
        if (!settled(order.status) && order.out_trade_no !== qr.getAttribute("data-out-trade-no")) {
          refreshQr();
        }
        return true;
      }, function () { setConnection("lost"); return false; });
  }

  function retry(now) {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (settled(current())) { return; }
    retryTimer = setTimeout(function () {
      retryTimer = null;
      check().then(function (reachable) {
        if (settled(current())) { return; }
        if (reachable) { connect(); } else { retry(); }
      });
    }, now ? 0 : retryMs);
    retryMs = Math.min(retryMs * 2, 1500);
  }

  function poll() {  // only for browsers without streaming fetch
    check().then(function () { if (!settled(current())) { setTimeout(poll, pollMs); } });
  }

  // ---- small screens: copy the link -------------------------------------------------------

  var copy = $("copy-link");
  if (copy) {
    copy.addEventListener("click", function () {
      var field = $("copy-field"), result = $("copy-result");
      var done = function (ok) {
        result.textContent = ok ? texts.copied : texts.copy_failed;
        result.hidden = false;
        if (!ok) { field.hidden = false; field.focus(); field.select(); }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(function () { done(true); },
          function () { done(false); });
      } else { done(false); }
    });
  }

  // ---- start ------------------------------------------------------------------------------

  if (settled(current())) {
    if (PAID[current()]) { paid(false); }
    return;
  }
  newQr.addEventListener("click", function () { qrRetryMs = 2000; refreshQr(); });
  if (qr.classList.contains("qr-waiting")) {
    refreshQr();
  } else {
    scheduleExpiry(parseInt(qr.getAttribute("data-expires-in-ms"), 10));
  }
  if (!window.fetch || !window.ReadableStream || !window.AbortController) { poll(); return; }
  window.addEventListener("online", function () { retry(true); });
  window.addEventListener("offline", function () { setConnection("lost"); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || settled(current())) { return; }
    check().then(function (reachable) { if (reachable && !stream) { connect(); } });
  });
  connect();
})();
