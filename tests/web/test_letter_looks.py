"""A letter's looks and languages over HTTP: the dashboard's page (accent colour, header
image upload and removal, translations), the theme stylesheet and the image as served
(immutable, by digest), and readers seeing the letter in their language on the letter
page, the signer list, the home page and the API, with hreflang links and one tally."""

from __future__ import annotations

import io
import os
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from PIL import Image
from sqlalchemy import select

from app.letters.models import Letter, LetterImage, LetterTranslation
from app.organizers.models import AuditEvent, Role
from tests.support.organizers import post_form, sign_in_as
from tests.web.flows import add_letter, add_verified_signers

SPANISH = {"title": "Financien las bibliotecas", "summary": "Que sigan abiertas.",
           "body": "Pedimos **una cosa**."}  # fmt: skip


def _editor(client: TestClient, app: FastAPI, role: Role = Role.EDITOR) -> str:
    letter = add_letter(app, title="Fund the libraries", summary="Keep them open.")
    sign_in_as(client, app, f"{role.value}@example.org", letter_slug=letter.slug, role=role)
    return letter.slug


def _jpeg(size: tuple[int, int] = (800, 400), *, noise: bool = False) -> bytes:
    if noise:  # incompressible: a big upload
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, "navy")
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=100, exif=exif.tobytes())
    return out.getvalue()


def _upload(client: TestClient, slug: str, data: bytes, name: str = "photo.jpg") -> Response:
    token = next(c.value for c in client.cookies.jar if c.name == "csrf")
    return client.post(
        f"/dashboard/header-images/{slug}",
        data={"csrf_token": token},
        files={"image": (name, data, "image/jpeg")},
        headers={"sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )


def test_the_looks_page_is_for_editors_and_owners(client: TestClient, app: FastAPI) -> None:
    slug = _editor(client, app, Role.VIEWER)
    for path in (f"/dashboard/letters/{slug}/looks", f"/dashboard/letters/{slug}/translations/es"):
        assert client.get(path).status_code == 403, path
    assert (
        post_form(
            client, f"/dashboard/letters/{slug}/looks", {"accent_color": "#000000"}
        ).status_code
        == 403
    )
    client.cookies.clear()
    assert client.get(f"/dashboard/letters/{slug}/looks", follow_redirects=False).status_code == 303
    slug = _editor(client, app)
    page = client.get(f"/dashboard/letters/{slug}/looks")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    assert f'href="/dashboard/letters/{slug}/translations/es"' in page.text
    assert client.get(f"/dashboard/letters/{slug}/translations/en").status_code == 404
    assert client.get(f"/dashboard/letters/{slug}/translations/fr").status_code == 404


def test_an_accent_colour_dark_enough_themes_the_letter_page(
    client: TestClient, app: FastAPI
) -> None:
    slug = _editor(client, app)
    client.get(f"/dashboard/letters/{slug}/looks")
    light = post_form(client, f"/dashboard/letters/{slug}/looks", {"accent_color": "#ffcc00"})
    assert light.status_code == 422
    assert "too light" in light.text and "A darker shade that works: #" in light.text
    wrong = post_form(client, f"/dashboard/letters/{slug}/looks", {"accent_color": "blue"})
    assert wrong.status_code == 422 and "#rrggbb" in wrong.text
    saved = post_form(client, f"/dashboard/letters/{slug}/looks", {"accent_color": "#7A1F5C"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=accent")

    page = client.get(f"/letters/{slug}").text
    assert '<link rel="stylesheet" href="/theme/accent-7a1f5c.css">' in page
    assert " style=" not in page and "<style" not in page  # CSP: no inline styles
    theme = client.get("/theme/accent-7a1f5c.css")
    assert theme.status_code == 200 and theme.headers["content-type"].startswith("text/css")
    assert "--accent: #7a1f5c;" in theme.text
    assert theme.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/theme/accent-zzzzzz.css").status_code == 404
    assert client.get("/theme/accent-7a1f5c0.css").status_code == 404

    cleared = post_form(client, f"/dashboard/letters/{slug}/looks", {"action": "clear"})
    assert cleared.status_code == 303
    assert "/theme/accent-" not in client.get(f"/letters/{slug}").text
    with app.state.database.read() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("letter.accent") == 2


def test_a_header_image_upload_is_stripped_served_immutable_and_removable(
    client: TestClient, app: FastAPI
) -> None:
    slug = _editor(client, app)
    client.get(f"/dashboard/letters/{slug}/looks")
    big = _jpeg((1400, 1000), noise=True)
    assert 1024 * 1024 < len(big) < 5 * 1024 * 1024  # over the dashboard's usual 1 MB limit
    response = _upload(client, slug, big)
    assert response.status_code == 303, response.text
    with app.state.database.read() as session:
        stored = session.scalars(select(LetterImage)).one()
        digest, data = stored.digest, stored.data
    assert b"Exif" not in data and (stored.width, stored.height) == (1400, 1000)

    page = client.get(f"/letters/{slug}").text
    tag = re.search(r'<img class="header-image"[^>]*>', page)
    assert tag and f'src="/letters/{slug}/header/{digest}.jpg"' in tag.group(0)
    assert 'alt=""' in tag.group(0)  # decorative (D118)
    served = client.get(f"/letters/{slug}/header/{digest}.jpg")
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get(f"/letters/{slug}/header/{'0' * 64}.jpg").status_code == 404
    assert client.get(f"/letters/{slug}/header/{digest}.png").status_code == 404

    refused = _upload(client, slug, b"GIF89a not really", "x.gif")
    assert refused.status_code == 422 and "not a JPEG" in refused.text
    no_file = post_form(client, f"/dashboard/header-images/{slug}", {})
    assert no_file.status_code == 422 and "not a JPEG" in no_file.text
    too_big = _upload(client, slug, b"\xff" * (6 * 1024 * 1024))
    assert too_big.status_code == 413

    removed = post_form(client, f"/dashboard/letters/{slug}/looks", {"action": "remove_image"})
    assert removed.status_code == 303
    assert 'class="header-image"' not in client.get(f"/letters/{slug}").text
    assert client.get(f"/letters/{slug}/header/{digest}.jpg").status_code == 404


def test_readers_see_the_translation_and_sign_the_one_letter(
    client: TestClient, app: FastAPI
) -> None:
    slug = _editor(client, app)
    path = f"/dashboard/letters/{slug}/translations/es"
    client.get(path)
    preview = post_form(client, path, {**SPANISH, "action": "preview"})
    assert preview.status_code == 200 and "<strong>una cosa</strong>" in preview.text
    empty = post_form(client, path, {"title": "", "body": ""})
    assert empty.status_code == 422
    saved = post_form(client, path, SPANISH)
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=translation")
    with app.state.database.read() as session:
        assert session.scalars(select(LetterTranslation.title)).one() == SPANISH["title"]
    letter = add_letter(app)  # another, untranslated
    with app.state.database.read() as session:
        ours = session.scalars(select(Letter).where(Letter.slug == slug)).one()
    add_verified_signers(app, ours, {}, {})
    client.cookies.clear()  # a reader

    spanish = client.get(f"/letters/{slug}", headers={"accept-language": "es-MX,es;q=0.9"}).text
    assert f"<h1>{SPANISH['title']}</h1>" in spanish
    assert "<p>Pedimos <strong>una cosa</strong>.</p>" in spanish
    assert "Fund the libraries" not in spanish.split("<main", 1)[1].split("</article>")[0]
    english = client.get(f"/letters/{slug}", headers={"accept-language": "en"}).text
    assert "<h1>Fund the libraries</h1>" in english
    base = app.state.settings.base_url
    for page in (spanish, english):
        assert f'<link rel="alternate" hreflang="es" href="{base}/letters/{slug}?lang=es">' in page
        assert f'<link rel="alternate" hreflang="en" href="{base}/letters/{slug}?lang=en">' in page
        assert 'hreflang="x-default"' in page
        assert re.search(r"data-live-count>2<", page)  # one tally, both languages
    assert 'rel="alternate" hreflang' not in client.get(f"/letters/{letter.slug}?lang=es").text
    # `?lang=` chooses too; a Spanish reader of an untranslated letter reads it in English.
    assert f"<h1>{SPANISH['title']}</h1>" in client.get(f"/letters/{slug}?lang=es").text
    other = client.get(f"/letters/{letter.slug}?lang=es").text
    assert f'<h1 lang="en">{letter.title}</h1>' in other

    signers = client.get(f"/letters/{slug}/signers?lang=es").text
    assert f"· {SPANISH['title']}</title>" in signers
    home = client.get("/?lang=es").text
    assert SPANISH["title"] in home and SPANISH["summary"] in home
    assert f'<h2 lang="en"><a href="/letters/{letter.slug}">' in home

    api = client.get(f"/api/v1/letters/{slug}").json()
    assert api["title"] == "Fund the libraries" and api["language"] == "en"
    assert api["translations"] == [
        {"language": "es", "title": SPANISH["title"], "summary": SPANISH["summary"],
         "body_html": "<p>Pedimos <strong>una cosa</strong>.</p>\n"}
    ]  # fmt: skip
