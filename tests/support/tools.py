"""The Node tools the tests run: the W3C Nu HTML Checker (npm `vnu-jar`, run with
Debian's Java) and Lighthouse, both pinned in tests/tools/package.json and its lock file.

`npm ci --prefix tests/tools` installs them (.ci/run does it when they are missing;
`python -m bench.lighthouse` too). After that they run offline. A test that needs one
skips without it, and fails instead under UNDERSIGNED_TEST_REQUIRE_ALL (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.config import REPO_ROOT, skip_or_fail

TOOLS = REPO_ROOT / "tests" / "tools"
VNU_JAR = TOOLS / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
LIGHTHOUSE = TOOLS / "node_modules" / ".bin" / "lighthouse"
LIGHTHOUSE_CHROME_FLAGS = "--headless --no-sandbox --disable-gpu --disable-background-networking"
INSTALL_HINT = "npm ci --prefix tests/tools"
LIGHTHOUSE_ATTEMPTS = 3


def install_tools() -> None:
    """`npm ci` from the lock file into tests/tools/node_modules (for bench/, which may
    install; the tests only look)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install the test tools (apt-get install npm)")
    subprocess.run(  # noqa: S603 - our own pinned tools
        [npm, "ci", "--prefix", str(TOOLS), "--no-audit", "--no-fund", "--loglevel=error"],
        check=True,
    )


def vnu_command() -> list[str]:
    """`java -jar vnu.jar`, or a skip (a failure in CI) naming what is missing."""
    java = shutil.which("java")
    if java is None:
        skip_or_fail("java is not installed (apt-get install default-jre-headless)")
    if not VNU_JAR.is_file():
        skip_or_fail(f"the Nu HTML Checker is not installed ({INSTALL_HINT})")
    # C1 only and the serial collector: half the CPU time of a default JVM for one short
    # run; C1's deeper frames need a larger stack than vnu's 512k minimum.
    return [
        str(java),
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xss8m",
        "-jar",
        str(VNU_JAR),
    ]


@dataclass(frozen=True)
class HtmlError:
    file: str
    line: int | None
    message: str
    extract: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}\n        {self.extract.strip()[:160]}"


def vnu_errors(files: list[Path]) -> list[HtmlError]:
    """Every error the Nu HTML Checker finds in `files`, checked in one run (one JVM
    start: it takes seconds)."""
    assert files, "nothing to check"
    result = subprocess.run(  # noqa: S603 - our own pinned tools
        [*vnu_command(), "--errors-only", "--format", "json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # vnu writes its JSON to stderr and exits 1 when it found errors.
    report: dict[str, Any] = json.loads(result.stderr or result.stdout)
    errors = []
    for message in report["messages"]:
        if message.get("type") not in ("error", "non-document-error"):
            continue
        errors.append(
            HtmlError(
                file=Path(str(message.get("url", "")).removeprefix("file:")).name,
                line=message.get("lastLine"),
                message=str(message.get("message", "")),
                extract=str(message.get("extract", "")),
            )
        )
    assert result.returncode == (1 if errors else 0), result.stderr[-2000:]
    return errors


def lighthouse_command() -> list[str]:
    """The installed Lighthouse, or a skip (a failure in CI) naming what is missing."""
    if shutil.which("node") is None:
        skip_or_fail("node is not installed (apt-get install nodejs npm)")
    if not LIGHTHOUSE.is_file():
        skip_or_fail(f"Lighthouse is not installed ({INSTALL_HINT})")
    return [str(LIGHTHOUSE)]


def run_lighthouse(
    url: str, report: Path, *, chromium: str, categories: tuple[str, ...], timeout: int = 180
) -> dict[str, Any]:
    """Lighthouse (mobile, its default preset) on `url`; its JSON report, also kept at
    `report`."""
    command = [
        *lighthouse_command(), url,
        "--output=json", f"--output-path={report}",
        f"--only-categories={','.join(categories)}",
        f"--chrome-flags={LIGHTHOUSE_CHROME_FLAGS}",
        "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "CHROME_PATH": chromium}
    for attempt in range(1, LIGHTHOUSE_ATTEMPTS + 1):
        try:
            subprocess.run(command, env=env, check=True, timeout=timeout)  # noqa: S603
            break
        except subprocess.CalledProcessError:
            # "Something went wrong with recording the trace over your page load. Please
            # run Lighthouse again. (NO_NAVSTART)": Chromium's trace, now and then. A run
            # that fails writes no report, so nothing of it is judged.
            if attempt == LIGHTHOUSE_ATTEMPTS:
                raise
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def failed_audits(data: dict[str, Any], category: str) -> dict[str, str]:
    """Audit id -> title (and what it names) for every audit of `category` that did not
    pass (informative, manual and not-applicable audits left out)."""
    audits = data["audits"]
    failed: dict[str, str] = {}
    for ref in data["categories"][category]["auditRefs"]:
        audit = audits[ref["id"]]
        mode = audit.get("scoreDisplayMode")
        score = audit.get("score")
        if mode in ("notApplicable", "informative", "manual") or score is None or score >= 1:
            continue
        items = (audit.get("details") or {}).get("items") or []
        named = []
        for item in items[:5]:
            if isinstance(item, dict):
                node = item.get("node")
                if isinstance(node, dict) and node.get("snippet"):
                    named.append(str(node["snippet"])[:120])
                elif item.get("url"):
                    named.append(str(item["url"]))
        failed[ref["id"]] = " | ".join([str(audit.get("title")), *named])
    return failed
