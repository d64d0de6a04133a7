// Receipts (issue 12), on three pages. The receipt code (`<slug>:<secret>`) only ever
// lives in the browser: in an address's fragment (never sent), in sessionStorage between
// the confirmation and the letter page, in the /receipt page's field. No English here:
// every sentence comes from the page (data-m-* attributes, translated by the server).
//
// 1. The confirmation page (form[data-receipt-confirm]): the link in the email carries
//    the code in its fragment; on Confirm it goes to sessionStorage and leaves the
//    address bar.
// 2. The letter page's thanks box ([data-receipt-thanks]): shows that code once.
// 3. /receipt (form[data-receipt-check]): checks the code against the letter's public
//    log without telling the server which entry is the reader's: it fetches the
//    checkpoint, the bucket of entries whose commitments share a short prefix, and the
//    inclusion proofs of the reader's entry and of up to 31 others of the bucket, at
//    random, in a random order; it checks that the reader's proof leads from its leaf
//    to the root the signed checkpoint states (RFC 9162 2.1.3.2, as
//    app/transparency/merkle.py verify_inclusion), and the checkpoint's Ed25519
//    signature with the key written into the page, where the browser can.
(function () {
  "use strict";

  var STORAGE_PREFIX = "undersigned-receipt:";
  var CODE = /^([a-z0-9]+(?:-[a-z0-9]+)*):([A-Za-z0-9_-]{43})$/;
  var SLUG_MAX = 80;
  var DECOYS = 31; // proofs asked for besides the reader's: the server sees up to 32
  var LEAF_PREFIX = "undersigned-log/v1";

  // --- The receipt code -------------------------------------------------------------

  function base64ToBytes(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function bytesToBase64(bytes) {
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary);
  }

  // {slug, secret: Uint8Array(32), code} of a receipt code, or null when it is not one
  // (the same rules as app/signlog/receipts.py parse_receipt_code).
  function parseCode(text) {
    var code = String(text || "").trim();
    if (code.indexOf("#") >= 0) code = code.slice(code.lastIndexOf("#") + 1); // a pasted link
    var match = CODE.exec(code);
    if (!match || match[1].length > SLUG_MAX) return null;
    var standard = match[2].replace(/-/g, "+").replace(/_/g, "/") + "=";
    var secret;
    try {
      secret = base64ToBytes(standard);
    } catch (e) {
      return null;
    }
    if (secret.length !== 32 || bytesToBase64(secret) !== standard) return null;
    return { slug: match[1], secret: secret, code: code };
  }

  function fragmentCode() {
    var hash = location.hash.slice(1);
    if (!hash) return null;
    try {
      return decodeURIComponent(hash);
    } catch (e) {
      return hash;
    }
  }

  function clearFragment() {
    if (location.hash && window.history && history.replaceState) {
      history.replaceState(history.state, "", location.pathname + location.search);
    }
  }

  function storage() {
    try {
      return window.sessionStorage;
    } catch (e) {
      return null; // storage blocked: the receipt is in the email anyway
    }
  }

  // --- 1. The confirmation page -----------------------------------------------------

  var confirmForm = document.querySelector("form[data-receipt-confirm]");
  if (confirmForm) {
    var held = parseCode(fragmentCode());
    var slug = confirmForm.getAttribute("data-receipt-confirm");
    confirmForm.addEventListener("submit", function () {
      if (held && held.slug === slug) {
        var store = storage();
        try {
          if (store) store.setItem(STORAGE_PREFIX + slug, held.code);
        } catch (e) {
          /* full or refused: the email has the receipt */
        }
      }
      clearFragment();
    });
  }

  // --- 2. The thanks box ------------------------------------------------------------

  var thanks = document.querySelector("[data-receipt-thanks]");
  if (thanks) {
    var store = storage();
    var key = STORAGE_PREFIX + thanks.getAttribute("data-receipt-thanks");
    var saved = null;
    try {
      saved = store ? store.getItem(key) : null;
      if (store) store.removeItem(key);
    } catch (e) {
      saved = null;
    }
    var receipt = parseCode(saved);
    if (receipt) {
      var link = thanks.querySelector("[data-receipt-link]");
      var href = "/receipt#" + receipt.code;
      link.setAttribute("href", href);
      link.textContent = location.origin + href;
      thanks.querySelector("[data-receipt-code]").textContent = receipt.code;
      thanks.querySelector("[data-receipt-filled]").hidden = false;
      thanks.querySelector("[data-receipt-fallback]").hidden = true;
    }
  }

  // --- 3. The check -----------------------------------------------------------------

  var checkForm = document.querySelector("form[data-receipt-check]");
  if (!checkForm) return;
  var result = document.querySelector("[data-receipt-result]");
  var input = checkForm.querySelector("input");
  var lang = document.documentElement.lang || "en";
  var numbers = new Intl.NumberFormat(lang);

  function message(name, values) {
    var text = result.getAttribute("data-m-" + name) || name;
    Object.keys(values || {}).forEach(function (field) {
      text = text.split("{" + field + "}").join(values[field]);
    });
    return text;
  }

  // A check that found the log's answers wrong (tampered, or not what it signed).
  function Failed(reason) {
    this.reason = reason;
  }
  // Anything else that stops the check, with the name of its message.
  function Stop(name) {
    this.name = name;
  }

  var subtle = window.crypto && window.crypto.subtle;

  function concat(parts) {
    var length = 0;
    parts.forEach(function (part) { length += part.length; });
    var out = new Uint8Array(length);
    var offset = 0;
    parts.forEach(function (part) {
      out.set(part, offset);
      offset += part.length;
    });
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await subtle.digest("SHA-256", bytes));
  }

  function hex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  var LEAF = new Uint8Array([0]);
  var NODE = new Uint8Array([1]);

  function leafHash(text) {
    return sha256(concat([LEAF, new TextEncoder().encode(text)]));
  }

  function nodeHash(left, right) {
    return sha256(concat([NODE, left, right]));
  }

  // A random order (Fisher-Yates with the browser's cryptographic random numbers).
  function shuffled(list) {
    var out = list.slice();
    var random = new Uint32Array(1);
    for (var i = out.length - 1; i > 0; i--) {
      crypto.getRandomValues(random);
      var j = random[0] % (i + 1);
      var kept = out[i];
      out[i] = out[j];
      out[j] = kept;
    }
    return out;
  }

  // RFC 9162 2.1.3.2, as app/transparency/merkle.py verify_inclusion.
  async function verifyInclusion(leaf, index, size, proof, root) {
    if (!(index >= 0 && index < size)) throw new Failed("index");
    var fn = index;
    var sn = size - 1;
    var r = leaf;
    for (var i = 0; i < proof.length; i++) {
      var p = proof[i];
      if (p.length !== 32) throw new Failed("proof hash");
      if (sn === 0) throw new Failed("proof too long");
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Failed("proof too short");
    if (!equal(r, root)) throw new Failed("root");
  }

  async function getJson(url) {
    var response;
    try {
      response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "omit", // no cookie: nothing to tie a check to a visitor
        referrerPolicy: "no-referrer",
      });
    } catch (e) {
      throw new Stop("network");
    }
    if (response.status === 404) throw new Stop("no-letter");
    if (!response.ok) throw new Stop("network");
    try {
      return await response.json();
    } catch (e) {
      throw new Stop("network");
    }
  }

  // The verifier key `<name>+<hex id>+base64(0x01 || key)` (app/transparency/note.py).
  function parseKey(vkey) {
    var match = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(String(vkey)); // base64 may hold "+"
    if (!match) return null;
    var parts = match.slice(1);
    var raw = base64ToBytes(parts[2]);
    if (raw.length !== 33 || raw[0] !== 1) return null;
    return { name: parts[0], id: parts[1], raw: raw, publicKey: raw.slice(1) };
  }

  // The signed checkpoint: its text lines, checked against the JSON, and whether its
  // signature by the page's key verifies (true), cannot be checked here (null).
  async function openCheckpoint(checkpoint, slug) {
    var note = String(checkpoint.note || "");
    var split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Failed("note");
    var text = note.slice(0, split + 1);
    var lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) throw new Failed("note");
    var origin = lines[0];
    var size = lines[1];
    var rootText = lines[2];
    if (!/^(0|[1-9][0-9]*)$/.test(size) || Number(size) !== checkpoint.size) throw new Failed("size");
    if (origin !== checkpoint.origin || origin.slice(-("/letters/" + slug).length) !== "/letters/" + slug) {
      throw new Failed("origin");
    }
    if (rootText !== checkpoint.root_hash) throw new Failed("root");
    var root = base64ToBytes(rootText);
    if (root.length !== 32) throw new Failed("root");

    var key = parseKey(checkForm.getAttribute("data-key"));
    if (!key) throw new Failed("key");
    var keyId = await sha256(concat([new TextEncoder().encode(key.name + "\n"), key.raw]));
    if (hex(keyId.slice(0, 4)) !== key.id) throw new Failed("key");
    var signature = null;
    note.slice(split + 2).split("\n").forEach(function (line) {
      var prefix = "\u2014 " + key.name + " ";
      if (line.indexOf(prefix) !== 0) return;
      var raw = base64ToBytes(line.slice(prefix.length));
      if (raw.length === 68 && hex(raw.slice(0, 4)) === key.id) signature = raw.slice(4);
    });
    if (!signature) throw new Failed("no signature by this site's key");
    var publicKey;
    try {
      publicKey = await subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      return { size: Number(size), root: root, signed: null }; // no Ed25519 in this browser
    }
    var ok = await subtle.verify({ name: "Ed25519" }, publicKey, signature, new TextEncoder().encode(text));
    if (!ok) throw new Failed("signature");
    return { size: Number(size), root: root, signed: true };
  }

  // {event, reason, hour, commitment} of a leaf, or null.
  function parseLeaf(leaf) {
    var parts = String(leaf).split(" ");
    if (parts.length !== 5 || parts[0] !== LEAF_PREFIX) return null;
    return { event: parts[1], reason: parts[2], hour: parts[3], commitment: parts[4] };
  }

  async function check(receipt) {
    var api = "/api/v1/letters/" + encodeURIComponent(receipt.slug) + "/log";
    var commitment = hex(await sha256(receipt.secret));
    var checkpoint = await getJson(api + "/checkpoint");
    var signed = await openCheckpoint(checkpoint, receipt.slug);
    var size = signed.size;
    if (size === 0) throw new Stop("pending");

    // The bucket: every sequenced entry whose commitment starts with these few digits.
    var digits = Number(checkpoint.receipt_prefix) || 0;
    var bucket = await getJson(api + "/lookup?prefix=" + commitment.slice(0, digits));
    var mine = (bucket.entries || []).filter(function (entry) {
      var leaf = parseLeaf(entry.leaf);
      return leaf && leaf.commitment === commitment && entry.index < size;
    });
    if (!mine.length) {
      if (bucket.truncated) throw new Failed("bucket cut short");
      throw new Stop("pending");
    }
    // An add, maybe a removal, maybe a restore: the latest decides.
    var deciding = mine.reduce(function (a, b) { return b.index > a.index ? b : a; });
    var index = deciding.index;
    var decided = parseLeaf(deciding.leaf);

    // Its inclusion proof, asked for together with the proofs of up to DECOYS other
    // entries of the same bucket, chosen at random, all at once in a random order: the
    // server sees a group of entries that share the prefix, never which one is the
    // reader's. (Asking for the entry's own block instead would narrow a big log's
    // bucket down to one entry.)
    var seen = {};
    seen[index] = true;
    var others = [];
    (bucket.entries || []).forEach(function (entry) {
      if (entry.index < size && !seen[entry.index]) {
        seen[entry.index] = true;
        others.push(entry.index);
      }
    });
    var asked = shuffled([index].concat(shuffled(others).slice(0, DECOYS)));
    var proofs = await Promise.all(asked.map(function (at) {
      return getJson(api + "/proof/inclusion?index=" + at + "&size=" + size);
    }));
    var proof = proofs[asked.indexOf(index)];
    if (proof.index !== index || proof.size !== size) throw new Failed("proof for another entry");
    var proofHashes = (proof.hashes || []).map(base64ToBytes);
    await verifyInclusion(await leafHash(deciding.leaf), index, size, proofHashes, signed.root);

    return { decided: decided, index: index, size: size, signed: signed.signed, slug: receipt.slug };
  }

  function say(kind, lines) {
    result.textContent = "";
    result.className = "receipt-result receipt-" + kind;
    lines.forEach(function (line, i) {
      var p = document.createElement("p");
      if (i === 0) p.className = "receipt-verdict";
      if (typeof line === "string") p.textContent = line;
      else p.appendChild(line);
      result.appendChild(p);
    });
  }

  function report(found) {
    var verdict;
    var kind;
    if (found.decided.event === "add") {
      kind = "counted";
      verdict = message("counted", {
        entry: numbers.format(found.index + 1),
        size: numbers.format(found.size),
        time: new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" }).format(new Date()),
      });
    } else {
      kind = "removed";
      var when = new Date(found.decided.hour);
      var date = isNaN(when) ? found.decided.hour : new Intl.DateTimeFormat(lang, { dateStyle: "long", timeZone: "UTC" }).format(when);
      if (found.decided.reason === "withdrawn") {
        // The signer's own choice: not "removed".
        verdict = message("withdrawn", { date: date });
      } else {
        var reason = result.getAttribute("data-m-reason-" + found.decided.reason) || found.decided.reason;
        verdict = message("removed", { date: date, reason: reason });
      }
    }
    var link = document.createElement("a");
    link.href = "/letters/" + encodeURIComponent(found.slug) + "/log";
    link.textContent = message("letter-log");
    say(kind, [
      verdict,
      message("proved", { size: numbers.format(found.size) }),
      message(found.signed ? "signed" : "unsigned"),
      link,
    ]);
  }

  var running = false;

  async function run() {
    if (running) return;
    var receipt = parseCode(input.value);
    if (!receipt) {
      say("problem", [message("not-a-code")]);
      return;
    }
    if (!subtle || !window.TextEncoder || !window.fetch) {
      say("problem", [message("unsupported")]);
      return;
    }
    running = true;
    result.setAttribute("aria-busy", "true");
    result.removeAttribute("data-failure");
    say("checking", [message("checking")]);
    try {
      report(await check(receipt));
    } catch (error) {
      if (error instanceof Stop) say(error.name === "pending" ? "pending" : "problem", [message(error.name)]);
      else {
        say("problem", [message("failed")]);
        // What failed, for whoever looks into it (not shown: no words for it here).
        result.setAttribute("data-failure", error instanceof Failed ? error.reason : String(error));
      }
    } finally {
      running = false;
      result.removeAttribute("aria-busy");
    }
  }

  checkForm.addEventListener("submit", function (event) {
    event.preventDefault();
    run();
  });

  var fromLink = fragmentCode();
  if (fromLink) {
    input.value = fromLink;
    clearFragment();
    run();
  }
})();
