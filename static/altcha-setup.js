// The proof-of-work widget's worker, from this site: the vendored widget's external
// build registers none, and the CSP allows no blob: workers (static/vendor/altcha/README.md).
const worker = new URL("/static/vendor/altcha/pbkdf2.js", document.baseURI).href;
globalThis.$altcha.algorithms.set("PBKDF2/SHA-256", () => new Worker(worker));
