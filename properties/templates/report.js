// Filters: area, verdict, a text match on property and config, failed checks only.
// Every element marked .filterable carries data-area, data-verdict, data-text, data-failed;
// a row of several verdicts (a library's) lists them in data-verdict separated by "|".
(function () {
  "use strict";
  var area = document.getElementById("f-area");
  var verdict = document.getElementById("f-verdict");
  var text = document.getElementById("f-text");
  var failed = document.getElementById("f-failed");
  var count = document.getElementById("f-count");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.filterable"));
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.filterable"));

  function matches(el) {
    var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    var hay = el.dataset.text || "";
    return (!area.value || el.dataset.area === area.value) &&
      (!verdict.value || el.dataset.verdict.split("|").indexOf(verdict.value) >= 0) &&
      (!failed.checked || el.dataset.failed === "yes") &&
      words.every(function (w) { return hay.indexOf(w) !== -1; });
  }

  function apply() {
    var shown = 0;
    rows.forEach(function (el) { el.hidden = !matches(el); if (!el.hidden) { shown += 1; } });
    cards.forEach(function (el) { el.hidden = !matches(el); });
    count.textContent = shown + " of " + rows.length + " rows shown";
  }

  [area, verdict, failed].forEach(function (el) { el.addEventListener("change", apply); });
  text.addEventListener("input", apply);
  apply();

  // Copy a reproduce command; file:// pages may lack the async clipboard, so fall back.
  function copied(button) {
    button.textContent = "copied";
    button.classList.add("done");
    setTimeout(function () { button.textContent = "copy"; button.classList.remove("done"); }, 1500);
  }
  function fallback(value, button) {
    var area = document.createElement("textarea");
    area.value = value;
    document.body.appendChild(area);
    area.select();
    try { if (document.execCommand("copy")) { copied(button); } } catch (e) { /* nothing to do */ }
    document.body.removeChild(area);
  }
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var value = button.dataset.copy;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value).then(function () { copied(button); },
          function () { fallback(value, button); });
      } else {
        fallback(value, button);
      }
    });
  });
})();
