// The proof-of-work widget's worker, from this site: the vendored widget's external
// build registers none, and the CSP allows no blob: workers (static/vendor/altcha/README.md).
// Its content-hashed URL comes from the page (data-worker on this script's tag); the
// plain one is served too.
const named = document.querySelector("script[data-worker]")?.dataset.worker;
const worker = new URL(named || "/static/vendor/altcha/pbkdf2.js", document.baseURI).href;
globalThis.$altcha.algorithms.set("PBKDF2/SHA-256", () => new Worker(worker));
