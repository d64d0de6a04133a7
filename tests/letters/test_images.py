"""Header images (app/letters/images.py): re-encoded by Pillow, upright, RGB, at most
1600 px wide, with no metadata left (a GPS position put in is gone), refused when too
big, not an image, or a decompression bomb."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.letters.images import (
    MAX_UPLOAD_BYTES,
    MAX_WIDTH,
    header_of,
    process_upload,
    remove_header_image,
    served_image,
    set_header_image,
)
from app.organizers.service import SHELL
from tests.support.factories import make_letter

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def _photo(
    size: tuple[int, int] = (400, 300),
    *,
    fmt: str = "JPEG",
    mode: str = "RGB",
    orientation: int | None = None,
    gps: bool = False,
) -> bytes:
    image = Image.new(mode, size, "red" if mode != "RGBA" else (255, 0, 0, 128))
    # The left half green, so an orientation change shows in the pixels.
    image.paste("green" if mode != "RGBA" else (0, 255, 0, 255), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x010F] = "ACME Camera"  # Make
    exif[0x0132] = "2026:11:27 10:00:00"  # DateTime
    if orientation:
        exif[ORIENTATION] = orientation
    if gps:
        exif[GPS_IFD] = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.0)}
    out = io.BytesIO()
    kwargs: dict[str, object] = {"exif": exif.tobytes()}
    if fmt == "JPEG":
        kwargs["comment"] = b"secret comment"
        kwargs["icc_profile"] = b"\0" * 128
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_gps_exif_comments_and_profiles_are_gone() -> None:
    upload = _photo(gps=True)
    with Image.open(io.BytesIO(upload)) as original:  # what went in
        assert original.getexif().get_ifd(GPS_IFD)
        assert original.info.get("comment") == b"secret comment"
    encoded = process_upload(upload)
    with Image.open(io.BytesIO(encoded.data)) as served:
        assert served.format == "JPEG" and served.mode == "RGB"
        assert dict(served.getexif()) == {}
        assert "exif" not in served.info and "icc_profile" not in served.info
        assert "comment" not in served.info
    for secret in (b"ACME", b"secret comment", b"Exif", b"2026:11:27"):
        assert secret not in encoded.data


def test_large_images_shrink_to_1600_wide_and_turn_upright() -> None:
    wide = process_upload(_photo((4000, 1000)))
    assert (wide.width, wide.height) == (MAX_WIDTH, 400)
    # Orientation 6: the camera was turned; the served image is upright (300 wide).
    turned = process_upload(_photo((400, 300), orientation=6))
    assert (turned.width, turned.height) == (300, 400)
    with Image.open(io.BytesIO(turned.data)) as served:
        top, bottom = served.getpixel((150, 10)), served.getpixel((150, 390))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[1] > 100 > top[0] and bottom[0] > 100 > bottom[1]  # green on top, red below


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_other_formats_become_rgb_jpeg(fmt: str) -> None:
    mode = "RGBA" if fmt in ("PNG", "WEBP") else "RGB"
    encoded = process_upload(_photo(fmt=fmt, mode=mode))
    with Image.open(io.BytesIO(encoded.data)) as served:
        assert (served.format, served.mode, served.size) == ("JPEG", "RGB", (400, 300))
    assert encoded.data.startswith(b"\xff\xd8")


@pytest.mark.parametrize(
    "upload",
    [b"", b"not an image at all", b"GIF89a broken", b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
)
def test_what_is_not_an_image_is_refused(upload: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        process_upload(upload)
    assert "not a JPEG" in refused.value.fields["image"]


def test_too_large_and_decompression_bombs_are_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        process_upload(b"\xff" * (MAX_UPLOAD_BYTES + 1))
    assert "larger than 5 MB" in refused.value.fields["image"]
    # A tiny file declaring 10,000 x 10,000 pixels: refused before it is decoded.
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(InvalidInput) as refused:
        process_upload(bomb.getvalue())
    assert "too many pixels" in refused.value.fields["image"]


def test_stored_served_by_digest_replaced_and_removed(session: Session) -> None:
    letter = make_letter(session)
    assert header_of(session, letter_id=letter.id) is None
    first = set_header_image(session, letter=letter, data=_photo(), actor=SHELL)
    assert header_of(session, letter_id=letter.id) == first
    assert first.path(letter.slug) == f"/letters/{letter.slug}/header/{first.digest}.jpg"
    served = served_image(session, slug=letter.slug, digest=first.digest)
    assert served.content_type == "image/jpeg" and served.data.startswith(b"\xff\xd8")
    second = set_header_image(session, letter=letter, data=_photo((500, 200)), actor=SHELL)
    assert second.digest != first.digest
    with pytest.raises(NotFound):  # the old address is gone
        served_image(session, slug=letter.slug, digest=first.digest)
    assert remove_header_image(session, letter=letter, actor=SHELL) is True
    assert header_of(session, letter_id=letter.id) is None
    assert remove_header_image(session, letter=letter, actor=SHELL) is False
