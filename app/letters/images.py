"""A letter's header image (`LetterImage`): an upload re-encoded by Pillow, with nothing
of the original file left in it but its pixels.

What an upload goes through (`process_upload`):
- at most `MAX_UPLOAD_BYTES`; JPEG, PNG, WebP or GIF, told by Pillow from its content
  (never by the name or the type the browser claims);
- opened with a pixel limit (`MAX_PIXELS`): a small file that unpacks into a huge
  image (a decompression bomb) is refused before it is decoded;
- turned upright by its EXIF orientation, converted to RGB (transparency on white; the
  first frame of an animation), shrunk to at most `MAX_WIDTH` pixels wide;
- saved anew as JPEG, with no metadata at all: no EXIF (GPS position, camera, date),
  no ICC profile, no comment.
It is kept in the database and served at `/letters/{slug}/header/{digest}.jpg`: the
digest (SHA-256 of the bytes) in the address lets browsers and proxies keep it for a
year, and a new image gets a new address.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.i18n import N_
from app.i18n import gettext as _
from app.letters.models import Letter, LetterImage
from app.organizers.service import Actor, record

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000
"""Width x height an upload may declare (a 50-megapixel photo is refused)."""
MAX_WIDTH = 1600
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
CONTENT_TYPE = "image/jpeg"
EXTENSION = "jpg"
JPEG_QUALITY = 85

TOO_LARGE = N_("The image is larger than 5 MB: choose a smaller one.")
NOT_AN_IMAGE = N_("This file is not a JPEG, PNG, WebP or GIF image.")
TOO_MANY_PIXELS = N_("This image has too many pixels (at most 40 megapixels).")


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    width: int
    height: int
    digest: str


def _refuse(message: str) -> InvalidInput:
    shown = _(message)  # in the request's language
    return InvalidInput(shown, fields={"image": shown})


def process_upload(data: bytes) -> Encoded:
    """The upload as it will be served (see the module), or InvalidInput."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise _refuse(TOO_LARGE)
    if not data:
        raise _refuse(NOT_AN_IMAGE)
    with warnings.catch_warnings():
        # Pillow warns between MAX_IMAGE_PIXELS and twice that, then raises: refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise _refuse(TOO_MANY_PIXELS)
                opened.seek(0)  # an animation: its first frame
                image = ImageOps.exif_transpose(opened)
                image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise _refuse(TOO_MANY_PIXELS) from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise _refuse(NOT_AN_IMAGE) from exc
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    else:
        image = image.convert("RGB")
    if image.width > MAX_WIDTH:
        height = max(1, round(image.height * MAX_WIDTH / image.width))
        image = image.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    # A new image from the pixels alone: nothing of the original's info dict comes along.
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    encoded = out.getvalue()
    return Encoded(encoded, clean.width, clean.height, hashlib.sha256(encoded).hexdigest())


@dataclass(frozen=True, slots=True)
class HeaderImage:
    """What a page needs to show the image (not its bytes)."""

    digest: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSION

    def path(self, slug: str) -> str:
        return f"/letters/{slug}/header/{self.digest}.{EXTENSION}"


def header_of(session: Session, *, letter_id: int) -> HeaderImage | None:
    """The letter's header image, without its bytes (one primary-key lookup)."""
    row = session.execute(
        select(LetterImage.digest, LetterImage.width, LetterImage.height).where(
            LetterImage.letter_id == letter_id
        )
    ).first()
    return HeaderImage(row[0], row[1], row[2]) if row else None


@dataclass(frozen=True, slots=True)
class ServedImage:
    content_type: str
    data: bytes
    digest: str


def served_image(session: Session, *, slug: str, digest: str) -> ServedImage:
    """The bytes of the letter's header image whose digest is `digest` (NotFound
    otherwise: an old address after a new upload). A draft's image too (the dashboard
    shows it): its address, with the digest, is known only to whoever saw the image."""
    row = session.execute(
        select(LetterImage.content_type, LetterImage.data, LetterImage.digest)
        .join(Letter, Letter.id == LetterImage.letter_id)
        .where(Letter.slug == slug, LetterImage.digest == digest)
    ).first()
    if row is None:
        raise NotFound()
    return ServedImage(row[0], row[1], row[2])


def set_header_image(session: Session, *, letter: Letter, data: bytes, actor: Actor) -> HeaderImage:
    """Processes the upload (`process_upload`) and makes it the letter's header image,
    in place of any earlier one. Recorded in the audit log (size and digest)."""
    encoded = process_upload(data)
    image = session.get(LetterImage, letter.id)
    if image is None:
        image = LetterImage(letter_id=letter.id)
        session.add(image)
    image.content_type = CONTENT_TYPE
    image.data = encoded.data
    image.width = encoded.width
    image.height = encoded.height
    image.digest = encoded.digest
    record(session, actor=actor, letter_id=letter.id, action="letter.image.set",
           width=encoded.width, height=encoded.height, digest=encoded.digest)  # fmt: skip
    session.flush()
    return HeaderImage(encoded.digest, encoded.width, encoded.height)


def remove_header_image(session: Session, *, letter: Letter, actor: Actor) -> bool:
    """False when the letter had none."""
    image = session.get(LetterImage, letter.id)
    if image is None:
        return False
    session.delete(image)
    record(session, actor=actor, letter_id=letter.id, action="letter.image.remove")
    session.flush()
    return True
