/* The admin overview refreshes itself: every N seconds (data-refresh-seconds, or the page's
   selector) it fetches the sections as server-rendered HTML (data-refresh-url) and swaps each
   [data-fragment] in place. It pauses while the tab is hidden and catches up when it is shown. */
(function () {
  "use strict";

  function start() {
    var root = document.getElementById("jq-overview");
    if (!root || !root.dataset.refreshUrl) return;
    var stamp = document.getElementById("jq-updated");
    var choice = document.getElementById("jq-refresh-seconds");
    var seconds = parseFloat(root.dataset.refreshSeconds) || 0;
    var timer = null;
    var busy = false;

    function schedule() {
      if (timer) clearTimeout(timer);
      timer = null;
      if (seconds > 0 && !document.hidden) timer = setTimeout(refresh, seconds * 1000);
    }

    function say(text, state) {
      stamp.textContent = text;
      stamp.dataset.state = state;
    }

    // A section whose button or selector is under the pointer or focused waits for the next
    // round: swapping it would move the control away from a click in progress.
    function inUse(target) {
      var focused = document.activeElement;
      if (focused && focused !== document.body && target.contains(focused) && focused.matches("button, input, select")) {
        return true;
      }
      return target.querySelector("button:hover, input:hover, select:hover") !== null;
    }

    function swap(fragments) {
      Object.keys(fragments).forEach(function (name) {
        var target = root.querySelector('[data-fragment="' + name + '"]');
        if (target && !inUse(target)) target.innerHTML = fragments[name];
      });
    }

    function refresh() {
      if (busy) return;
      busy = true;
      fetch(root.dataset.refreshUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
          if (!response.ok || !json) throw new Error(response.ok ? "signed out" : "HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          swap(data.fragments);
          say("updated " + data.updated, "updated");
        })
        .catch(function (error) {
          say("not updated (" + error.message + "), trying again", "failed");
        })
        .then(function () {
          busy = false;
          schedule();
        });
    }

    if (choice) {
      var value = String(seconds);
      if (!Array.prototype.some.call(choice.options, function (o) { return o.value === value; })) {
        choice.add(new Option(value + " s", value), 0);
      }
      choice.value = value;
      choice.addEventListener("change", function () {
        seconds = parseFloat(choice.value) || 0;
        if (seconds > 0) refresh(); else schedule();
      });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) schedule(); else if (seconds > 0) refresh();
    });
    schedule();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
