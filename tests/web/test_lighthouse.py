"""Lighthouse's SEO and accessibility scores are 100 on the home, letter and signer pages.

Lighthouse (npm, pinned in tests/tools; mobile, its default preset) runs headless
Debian Chromium (CHROME_PATH) against the site test_accessibility.py seeds and serves
on loopback, with `--only-categories=seo,accessibility` (performance is measured by
`python -m bench.lighthouse`, not here: a shared CI machine's timings are not a test).
A page below 100 fails, listing every audit that did not pass. The JSON reports stay
in `test-artifacts/lighthouse-<page>.json`.
"""

from __future__ import annotations

import pytest

from tests.support.browser import chromium_path
from tests.support.config import REPO_ROOT, skip_or_fail
from tests.support.tools import failed_audits, run_lighthouse
from tests.web.test_accessibility import SLUG, Site, site  # noqa: F401 - the seeded site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CATEGORIES = ("seo", "accessibility")
PAGES = {
    "home": "/",
    "letter": f"/letters/{SLUG}",
    "signers": f"/letters/{SLUG}/signers",
}
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.mark.parametrize("name", list(PAGES))
def test_seo_and_accessibility_score_100(site: Site, name: str) -> None:  # noqa: F811
    chromium = chromium_path()
    if chromium is None:
        skip_or_fail("Chromium not found (set UNDERSIGNED_TEST_CHROMIUM)")
        return
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / f"lighthouse-{name}.json"
    data = run_lighthouse(site.url(PAGES[name]), report, chromium=chromium, categories=CATEGORIES)
    assert data["finalDisplayedUrl"] == site.url(PAGES[name]), "Lighthouse was redirected"
    missed = []
    for category in CATEGORIES:
        score = data["categories"][category]["score"]
        if score != 1:
            failed = failed_audits(data, category)
            lines = [f"  {audit}: {why}" for audit, why in sorted(failed.items())]
            missed.append(f"{category} {round((score or 0) * 100)}:\n" + "\n".join(lines))
    assert not missed, f"{PAGES[name]}: " + "\n".join(missed)


def test_a_failed_audit_is_named() -> None:
    """The failure message names what did not pass (and leaves out what passed or did
    not apply), from a report shaped as Lighthouse writes it."""
    report = {
        "categories": {
            "seo": {
                "score": 0.92,
                "auditRefs": [{"id": "meta-description"}, {"id": "canonical"}, {"id": "hreflang"}],
            }
        },
        "audits": {
            "meta-description": {
                "title": "Document does not have a meta description",
                "score": 0,
                "scoreDisplayMode": "binary",
            },
            "canonical": {"title": "Document has a valid `rel=canonical`", "score": 1},
            "hreflang": {"title": "hreflang", "score": None, "scoreDisplayMode": "notApplicable"},
        },
    }
    assert failed_audits(report, "seo") == {
        "meta-description": "Document does not have a meta description"
    }
