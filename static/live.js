// Keeps the tally on a letter page fresh. The page works without it.
(function () {
  "use strict";
  var article = document.querySelector("[data-live-slug]");
  if (!article || !window.fetch) return;
  var slug = article.getAttribute("data-live-slug");
  var count = document.querySelector("[data-live-count]");
  var progress = document.querySelector("[data-live-progress]");
  var format = new Intl.NumberFormat("en-US");
  function refresh() {
    if (document.hidden) return;
    fetch("/api/v1/letters/" + encodeURIComponent(slug), { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (letter) {
        if (!letter) return;
        if (count) count.textContent = format.format(letter.signature_count);
        if (progress) progress.value = Math.min(letter.signature_count, Number(progress.max));
      })
      .catch(function () {});
  }
  setInterval(refresh, 30000);
})();
