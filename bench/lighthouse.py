"""`python -m bench.lighthouse`: Lighthouse (mobile) against a served demo.

Serves the demo letters (`undersigned db upgrade`, `demo`, `serve` on SQLite in a
temporary directory, loopback only), runs Lighthouse on `/`, `/letters/ice-out` and
`/letters/ice-out/signers` with headless Chromium, and prints each page's performance,
accessibility, best-practices and SEO scores with the audits that did not pass.

The target (issue 10): performance 100 on every page, with no "efficient cache policy"
(`uses-long-cache-ttl`) or "text compression" (`uses-text-compression`) finding.
`--strict` exits 1 when it is missed.

Lighthouse is the npm package pinned in tests/tools/package.json and its lock file (the
tests run it too), installed on first use with `npm ci --prefix tests/tools`
(LIGHTHOUSE_VERSION: the 12 series runs on Node 20 and still has both audits; 13 needs
Node 22 and folds them into "insights"). After that it runs offline. Chromium is
/usr/bin/chromium (CHROME_PATH to change it). The JSON reports are kept in
var/lighthouse/reports/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import clean_env, console_script, wait_until_healthy
from tests.support.tools import LIGHTHOUSE, install_tools, run_lighthouse

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "var" / "lighthouse"
LIGHTHOUSE_VERSION = "12.8.2"  # as tests/tools/package.json pins it
CHROMIUM = "/usr/bin/chromium"
PAGES = ("/", "/letters/ice-out", "/letters/ice-out/signers")
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
MUST_PASS = ("uses-long-cache-ttl", "uses-text-compression")
"""Audits that must not report a finding (besides performance 100)."""
RUN_SECONDS = 180


@dataclass
class Result:
    path: str
    scores: dict[str, int | None]
    findings: dict[str, list[str]]
    """Audit id -> its title and the items it names (URLs), for every audit that did
    not pass (score below 1; informative and not-applicable audits left out)."""

    def missed(self) -> list[str]:
        reasons = []
        if self.scores.get("performance") != 100:
            reasons.append(f"{self.path}: performance {self.scores.get('performance')}")
        reasons += [f"{self.path}: {audit}" for audit in MUST_PASS if audit in self.findings]
        return reasons


def ensure_lighthouse() -> Path:
    """tests/tools/node_modules/.bin/lighthouse, installed from the lock file if missing."""
    if not LIGHTHOUSE.exists():
        print(f"Installing lighthouse@{LIGHTHOUSE_VERSION} into tests/tools ...", flush=True)
        install_tools()
    return LIGHTHOUSE


def serve_demo(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`undersigned serve` with the demo letters on SQLite under `directory`."""
    env = clean_env()
    script = console_script()
    for command in (["db", "upgrade"], ["demo"]):
        subprocess.run([script, *command], cwd=directory, env=env, check=True, capture_output=True)
    port = free_port()
    log = (directory / "serve.log").open("w")
    server = subprocess.Popen(
        [script, "serve", "--port", str(port)],
        cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, server, (directory / "serve.log").read_text)
    return server, url


def read_result(path: str, data: dict[str, object]) -> Result:
    categories = data["categories"]
    audits = data["audits"]
    assert isinstance(categories, dict) and isinstance(audits, dict)
    scores: dict[str, int | None] = {}
    for name in CATEGORIES:
        score = categories[name]["score"]
        scores[name] = None if score is None else round(score * 100)
    findings: dict[str, list[str]] = {}
    for audit_id, audit in audits.items():
        mode = audit.get("scoreDisplayMode")
        score = audit.get("score")
        if mode in ("notApplicable", "informative", "manual") or score is None or score >= 1:
            continue
        items = (audit.get("details") or {}).get("items") or []
        named = [str(item["url"]) for item in items if isinstance(item, dict) and "url" in item]
        findings[audit_id] = [f"{audit.get('title')} ({audit.get('displayValue', '')})", *named]
    return Result(path, scores, findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lighthouse", description=__doc__)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--url", help="measure this running server instead of a served demo")
    parser.add_argument("--chromium", default=os.environ.get("CHROME_PATH", CHROMIUM))
    args = parser.parse_args(argv)

    if not Path(args.chromium).exists():
        raise SystemExit(f"no Chromium at {args.chromium} (apt-get install chromium)")
    ensure_lighthouse()
    reports = HOME / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="undersigned-lighthouse-") as tmp:
        server = None
        base = args.url
        if base is None:
            server, base = serve_demo(Path(tmp))
        try:
            for path in PAGES:
                name = path.strip("/").replace("/", "_") or "home"
                data = run_lighthouse(  # retried when Chromium's trace fails
                    base + path,
                    reports / f"{name}.json",
                    chromium=args.chromium,
                    categories=CATEGORIES,
                    timeout=RUN_SECONDS,
                )
                results.append(read_result(path, data))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)

    print(f"\nLighthouse {LIGHTHOUSE_VERSION}, mobile preset, {base}")
    print(f"{'page':<28}" + "".join(f"{name:>16}" for name in CATEGORIES))
    for result in results:
        cells = "".join(f"{result.scores[name]!s:>16}" for name in CATEGORIES)
        print(f"{result.path:<28}{cells}")
    for result in results:
        for audit_id, lines in sorted(result.findings.items()):
            print(f"  {result.path}: {audit_id}: {lines[0]}")
            for line in lines[1:6]:
                print(f"      {line}")
    missed = [reason for result in results for reason in result.missed()]
    print("\nTarget (performance 100, no cache-policy or text-compression finding): "
          + ("met" if not missed else "MISSED: " + "; ".join(missed)))  # fmt: skip
    print(f"Reports: {reports}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
