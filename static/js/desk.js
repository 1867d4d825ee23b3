/* The options desk's page script: the connection indicator's browser half, and small controls.
 *
 * The server sends the indicator ("live", "stale", "no-feed") with the clock once a second. Only
 * the browser knows when its socket is down, or when the server has gone quiet, so it says
 * "reconnecting" and "stale" itself: nothing keeps pretending to be live.
 */
(function () {
  "use strict";

  var QUIET_MS = 4000;          // the server's heartbeat is 1 s: four missed, the data is stale
  var SIGNED_OUT = 4401;        // marketdata.consumers.feed.UNAUTHENTICATED_CLOSE_CODE
  var PAGE_UNAVAILABLE = 4404;  // marketdata.consumers.pages.PAGE_UNAVAILABLE_CLOSE_CODE
  // htmx's ws extension retries only after these codes; a server restart can close with others.
  var EXTENSION_RETRIES = [1006, 1011, 1012, 1013];

  var FLASH_MS = 600;
  var lastMessageAt = 0;
  var socketOpen = false;
  var retries = 0;

  function indicator() { return document.getElementById("conn"); }

  function hhmmss(ms) {
    // The exchange's time (IST) whatever the browser's zone, as the server writes it.
    return new Date(ms).toLocaleTimeString("en-GB", { timeZone: "Asia/Kolkata", hour12: false });
  }

  function show(state, label) {
    var element = indicator();
    if (!element) { return; }
    element.dataset.state = state;
    element.textContent = label;
  }

  document.addEventListener("htmx:wsConnecting", function () {
    if (lastMessageAt) { show("reconnecting", "Reconnecting… · last data " + hhmmss(lastMessageAt)); }
  });

  document.addEventListener("htmx:wsOpen", function () {
    socketOpen = true;
    retries = 0;
  });

  // A changed cell arrives flashing ("up"/"dn": a tint and an arrow). One timer a message then
  // drops the tint and keeps the arrow ("was-up"/"was-dn"): two style changes a cell, where a CSS
  // animation would repaint every flashing cell on every frame (seconds of work a second on a
  // busy chain).
  function endFlash(elements) {
    elements.forEach(function (element) {
      if (element.classList.contains("up")) { element.classList.replace("up", "was-up"); }
      else { element.classList.replace("dn", "was-dn"); }
    });
  }

  // Live fragments are swapped here rather than by htmx's own out-of-band swap: htmx fires several
  // events and scans attributes for every element, and a busy chain update changes hundreds of
  // cells (in the profiler, seconds a message on a 2-core machine). This is the same swap (each top-level element replaces the element
  // with its id), without the per-element ceremony; elements that carry htmx attributes of their
  // own (forms, ws-send buttons) are still handed to htmx.process.
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var template = document.createElement("template");
    template.innerHTML = event.detail.message;
    var elements = Array.prototype.slice.call(template.content.children);
    for (var i = 0; i < elements.length; i++) {
      var swap = elements[i].getAttribute("hx-swap-oob");
      if (swap !== null && swap !== "true") { return; }  // another swap style: let htmx do it all
    }
    event.preventDefault();
    var flashed = [];
    elements.forEach(function (element) {
      var target = element.id && document.getElementById(element.id);
      if (!target) { return; }
      element.removeAttribute("hx-swap-oob");
      target.replaceWith(element);
      if (element.classList.contains("up") || element.classList.contains("dn")) { flashed.push(element); }
      if (element.querySelector("[hx-get],[hx-post],[ws-send],[hx-trigger]") ||
          element.matches("[hx-get],[hx-post],[ws-send],[hx-trigger]")) {
        htmx.process(element);
      }
    });
    if (flashed.length) { window.setTimeout(endFlash, FLASH_MS, flashed); }
    lastMessageAt = Date.now();
    document.dispatchEvent(new CustomEvent("desk:swapped"));
  });

  // A message htmx swapped itself (another swap style than "true").
  document.addEventListener("htmx:wsAfterMessage", function () {
    lastMessageAt = Date.now();
    document.dispatchEvent(new CustomEvent("desk:swapped"));
  });

  document.addEventListener("htmx:wsClose", function (event) {
    socketOpen = false;
    var code = event.detail.event.code;
    if (code === SIGNED_OUT) {
      show("signed-out", "Signed out");
      window.location.assign("/login/?next=" + encodeURIComponent(window.location.pathname + window.location.search));
      return;
    }
    if (code === PAGE_UNAVAILABLE) {
      show("stale", "Not available");
      return;
    }
    show("reconnecting", "Reconnecting…" + (lastMessageAt ? " · last data " + hhmmss(lastMessageAt) : ""));
    if (EXTENSION_RETRIES.indexOf(code) < 0) {
      // Jittered backoff as the extension's own, up to 30 s.
      var delay = Math.random() * Math.min(30000, 1000 * Math.pow(2, retries));
      retries += 1;
      var wrapper = event.detail.socketWrapper;
      window.setTimeout(function () { wrapper.reconnect(); }, delay);
    }
  });

  window.setInterval(function () {
    var element = indicator();
    if (socketOpen && lastMessageAt && Date.now() - lastMessageAt > QUIET_MS && element &&
        element.dataset.state === "live") {
      show("stale", "Stale · last data " + hhmmss(lastMessageAt));
    }
  }, 1000);

  // <form data-autosubmit>: a change of any of its fields submits it (a plain GET form otherwise).
  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-autosubmit")) { form.requestSubmit(); }
  });
}());
