"use strict";
// Actions go to the JSON API with fetch(): JSON body, the admin header, and
// the browser's own basic credentials (same origin). No form posts.
(function () {
  var content = document.getElementById("content");
  var message = document.getElementById("message");
  var busy = false;

  function api(method, path, body) {
    // location.origin carries no credentials, so fetch() accepts the URL.
    return fetch(new URL(path, location.origin), {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Switchyard-Admin": "1" },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.error || ("HTTP " + r.status)); }
        return j;
      });
    });
  }

  function show(text, ok) {
    message.textContent = text;
    message.className = "show " + (ok ? "ok" : "err");
  }

  function enc(s) { return encodeURIComponent(s); }

  function requestFor(backend, server, action, weight) {
    var base = "/api/backends/" + enc(backend) + "/servers/" + enc(server);
    switch (action) {
      case "ready": case "drain": case "maint":
        return [base + "/state", { state: action }];
      case "check-on": return [base + "/check", { enabled: true }];
      case "check-off": return [base + "/check", { enabled: false }];
      case "weight": return [base + "/weight", { weight: weight }];
    }
    return null;
  }

  function apply(section) {
    var backend = section.getAttribute("data-backend");
    var action = section.querySelector("select.action").value;
    var weight = parseInt(section.querySelector("input.weight").value, 10);
    var servers = Array.prototype.map.call(
      section.querySelectorAll("input.sel:checked"), function (c) { return c.value; });
    if (!action) { show("Choose an action first.", false); return; }
    if (!servers.length) { show("Tick at least one server.", false); return; }
    if (action === "weight" && !(weight >= 0 && weight <= 256)) {
      show("Enter a weight from 0 to 256.", false); return;
    }
    busy = true;
    Promise.all(servers.map(function (s) {
      var req = requestFor(backend, s, action, weight);
      return api("PUT", req[0], req[1]);
    })).then(function () {
      show(backend + ": " + action + " applied to " + servers.join(", "), true);
    }, function (e) {
      show(backend + ": " + e.message, false);
    }).then(function () { busy = false; refresh(true); });
  }

  function applySplit(span) {
    var weights = {};
    span.querySelectorAll("input.split-weight").forEach(function (i) {
      weights[i.getAttribute("data-backend")] = parseInt(i.value, 10) || 0;
    });
    var path = "/api/frontends/" + enc(span.getAttribute("data-frontend")) +
      "/routes/" + span.getAttribute("data-route") + "/split";
    api("PUT", path, weights).then(function (j) {
      show("Split is now " + j.split, true); refresh(true);
    }, function (e) { show(e.message, false); });
  }

  function reset(body) {
    api("POST", "/api/reset", body).then(function (j) {
      show("Reset to config: " + j.reset, true); refresh(true);
    }, function (e) { show(e.message, false); });
  }

  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.matches("button.apply")) { apply(t.closest("section.backend")); }
    else if (t.matches("button.split-apply")) { applySplit(t.closest(".split")); }
    else if (t.matches("button.reset")) {
      var row = t.closest("tr");
      reset({ backend: row.getAttribute("data-backend"), server: row.getAttribute("data-server") });
    } else if (t.matches("button.reset-route")) {
      var mark = t.parentNode.querySelector(".runtime-route");
      reset({ frontend: mark.getAttribute("data-frontend"),
              route: parseInt(mark.getAttribute("data-route"), 10) });
    }
    else if (t.id === "reload") {
      api("POST", "/api/reload", {}).then(function (j) {
        show("Config reloaded: generation " + j.generation, true); refresh(true);
      }, function (e) { show("Reload failed: " + e.message, false); refresh(true); });
    } else if (t.matches("input.sel-all")) {
      t.closest("table").querySelectorAll("input.sel").forEach(function (c) {
        if (c.closest("tr").style.display !== "none") { c.checked = t.checked; }
      });
    }
  });

  var filter = document.getElementById("filter");
  function applyFilter() {
    var q = filter.value.trim().toLowerCase();
    content.querySelectorAll("tr[data-server]").forEach(function (tr) {
      var text = (tr.getAttribute("data-backend") + " " + tr.textContent).toLowerCase();
      tr.style.display = !q || text.indexOf(q) >= 0 ? "" : "none";
    });
  }
  filter.addEventListener("input", applyFilter);

  // Refresh the numbers, but never under an operator's half-made choice.
  function isEditing() {
    var a = document.activeElement;
    return busy || content.querySelector("input.sel:checked, input.sel-all:checked") ||
      (a && content.contains(a) && /INPUT|SELECT/.test(a.tagName)) ||
      Array.prototype.some.call(content.querySelectorAll("select.action"),
        function (s) { return s.value !== ""; });
  }

  function refresh(force) {
    if (!force && (!document.getElementById("auto").checked || isEditing())) { return; }
    fetch(new URL("/", location.origin), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("content");
        if (fresh) { content.innerHTML = fresh.innerHTML; applyFilter(); }
        document.body.setAttribute("data-refreshed", String(Date.now()));
      }, function () { /* keep the last numbers */ });
  }
  setInterval(refresh, 5000);
})();
