// Live sending progress: poll the JSON counts and update the bar; without JS the page shows
// the counts as of its last load.
(function () {
  "use strict";
  function start(block) {
    var url = block.getAttribute("data-progress-url");
    var bar = block.querySelector(".progress");
    var fill = bar.querySelector("span");
    var timer = null;
    function set(name, value) {
      var node = block.querySelector('[data-count="' + name + '"]');
      if (node) { node.textContent = String(value); }
    }
    function show(data) {
      fill.style.width = data.percent + "%";
      bar.setAttribute("aria-valuenow", String(data.percent));
      set("status", data.status);
      set("total", data.total);
      set("queued", data.queued + data.sending);
      ["sent", "failed", "bounced", "cancelled"].forEach(function (k) { set(k, data[k]); });
      set("paused", data.paused || "");
      block.querySelector(".paused-flag").hidden = !data.paused;
      block.querySelector(".done-flag").hidden = !data.done;
      block.setAttribute("data-done", data.done ? "yes" : "no");
    }
    function poll() {
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (data) { show(data); }
          timer = window.setTimeout(poll, data && data.done ? 10000 : 1500);
        })
        .catch(function () { timer = window.setTimeout(poll, 5000); });
    }
    poll();
    return function () { window.clearTimeout(timer); };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var block = document.querySelector("[data-progress-url]");
    if (block) { start(block); }
  });
})();
