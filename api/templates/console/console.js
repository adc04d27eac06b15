// passflow console: refreshes the overview's panels every few seconds (same origin, the
// session cookie). Nothing else here: every page works without it.
(function () {
  "use strict";
  var panels = document.getElementById("panels");
  if (!panels) { return; }
  var url = panels.getAttribute("data-refresh");
  var status = document.getElementById("updated");
  var every = 5000;
  // One refresh at a time: the next is scheduled only when the last has answered (or failed),
  // so a slow server is never sent a second request for the same panels.
  function next() { window.setTimeout(refresh, every); }
  function refresh() {
    if (document.hidden) { next(); return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.redirected || !answer.ok) { throw new Error(String(answer.status)); }
        return answer.text();
      })
      .then(function (html) {
        // A table the reader opened stays open.
        var open = Array.prototype.map.call(panels.querySelectorAll("details[open]"),
          function (d) { return d.closest("section").getAttribute("aria-labelledby"); });
        panels.innerHTML = html;
        open.forEach(function (label) {
          var d = panels.querySelector('section[aria-labelledby="' + label + '"] details');
          if (d) { d.open = true; }
        });
        status.textContent = "Updated at " + new Date().toLocaleTimeString();
      })
      .catch(function (error) {
        status.textContent = "Not updated (" + error.message + "): sign in again if this stays";
      })
      .then(next);
  }
  next();
})();
