"""C2SP signed notes with Ed25519 (c2sp.org/signed-note) and tree checkpoints
(c2sp.org/tlog-checkpoint).

A signed note is a text that ends in a newline, a blank line, and one or more lines
`— <key name> base64(key ID || signature)`. The key ID is the first four bytes of
SHA-256(key name || 0x0A || 0x01 || Ed25519 public key), and a verifier key is written
`<key name>+<hex key ID>+base64(0x01 || public key)`, as Go's
golang.org/x/mod/sumdb/note does, so `note.NewVerifier` and `note.Open` accept our keys
and notes, and we theirs. A signer key is written the Go way too,
`PRIVATE+KEY+<key name>+<hex key ID>+base64(0x01 || Ed25519 seed)`: it is a secret.

A checkpoint is the note text `<origin>\\n<tree size>\\n<base64 root hash>\\n`, optionally
followed by non-empty extension lines.

Parsing is strict: one way to write each thing. Base64 must be canonical (padded, no
stray bits), hex lowercase, sizes without leading zeros; a note must be UTF-8 without
control characters other than newline; signature lines must all be well formed; a
signature by a known key must verify, a key may sign once, and at least one known key
must have signed. Signatures by unknown keys are kept aside, unverified, as the
specification requires (they allow key rotation and witness cosignatures).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ALG_ED25519 = 0x01
"""The signature type byte of Ed25519 keys and key IDs."""

ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
MAX_SIGNATURES = 100
"""More signature lines than this make a note malformed (the spec asks for at least 16)."""

MAX_TREE_SIZE = 2**63 - 1
"""The largest tree size a checkpoint may state (what int64 verifiers can read)."""

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note, key or checkpoint is malformed or does not verify."""


class InvalidSignatureError(NoteError):
    """A known key's signature on the note does not verify."""

    def __init__(self, name: str, key_id: int) -> None:
        super().__init__(f"invalid signature for key {name}+{key_id:08x}")
        self.name = name
        self.key_id = key_id


class UnverifiedNoteError(NoteError):
    """The note is well formed but no known key signed it."""

    def __init__(self, note: Note) -> None:
        super().__init__("no known key signed this note")
        self.note = note


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Standard, padded base64 in its one canonical spelling."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise NoteError(f"{what} is not base64") from None
    if _b64encode(data) != text:
        raise NoteError(f"{what} is not canonical base64")
    return data


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def is_valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode space, no plus, no control character."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and not _has_control(name)
        and _is_utf8(name)
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def key_id(name: str, key: bytes) -> int:
    """The 32-bit key ID: SHA-256(name || 0x0A || signature type || public key)[:4]."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Verifier:
    """A public Ed25519 note key: its name, key ID and 32-byte public key."""

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_name(self.name):
            raise NoteError(f"{self.name!r} is not a valid key name")
        if len(self.public_key) != ED25519_KEY_SIZE:
            raise NoteError("an Ed25519 public key is 32 bytes")
        if self.key_id != key_id(self.name, bytes([ALG_ED25519]) + self.public_key):
            raise NoteError("the key ID does not match the key name and public key")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        return cls(name, key_id(name, bytes([ALG_ED25519]) + public_key), public_key)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a verifier key `<name>+<hex key ID>+base64(0x01 || public key)`."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not _HEX_KEY_ID.fullmatch(parts[1]):
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, encoded = parts
        data = _b64decode(encoded, "the verifier key")
        if not data or data[0] != ALG_ED25519:
            raise NoteError("the verifier key is not an Ed25519 key")
        return cls(name, int(hex_id, 16), data[1:])

    def vkey(self) -> str:
        """The verifier key string, the form to publish."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` (without the key ID) is this key's on `message`."""
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """A private Ed25519 note key. Its repr shows the name and key ID only."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_name(name):
            raise NoteError(f"{name!r} is not a valid key name")
        if len(seed) != ED25519_KEY_SIZE:
            raise NoteError("an Ed25519 private key (seed) is 32 bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        self.verifier = Verifier.from_public_key(
            name, self._private.public_key().public_bytes_raw()
        )

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key (from the operating system's random source)."""
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Read a signer key `PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)`."""
        parts = skey.split("+", 4)
        if (
            len(parts) != 5
            or parts[0] != "PRIVATE"
            or parts[1] != "KEY"
            or not _HEX_KEY_ID.fullmatch(parts[3])
        ):
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>")
        name, hex_id, encoded = parts[2], parts[3], parts[4]
        data = _b64decode(encoded, "the signer key")
        if not data or data[0] != ALG_ED25519:
            raise NoteError("the signer key is not an Ed25519 key")
        signer = cls(name, data[1:])
        if signer.key_id != int(hex_id, 16):
            raise NoteError("the key ID does not match the key name and public key")
        return signer

    def skey(self) -> str:
        """The signer key string: a secret, for the key file only."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self._seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"Signer({self.name}+{self.key_id:08x})"


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        encoded = _b64encode(self.key_id.to_bytes(4, "big") + self.signature)
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the verified signatures and those by unknown keys."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note text ends with a newline")
    if not _is_utf8(text) or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("a note is UTF-8 without control characters other than newline")


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    """The signed note: `text`, a blank line, one signature line per signer."""
    _check_text(text)
    message = text.encode("utf-8")
    lines: list[str] = []
    seen: set[tuple[str, int]] = set()
    for signer in signers:
        if (signer.name, signer.key_id) in seen:
            raise NoteError(f"key {signer.name}+{signer.key_id:08x} signs twice")
        seen.add((signer.name, signer.key_id))
        lines.append(Signature(signer.name, signer.key_id, signer.sign(message)).line())
    if not lines:
        raise NoteError("a signed note needs at least one signature")
    return text + "\n" + "".join(lines)


def _verifier_map(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        if key in known and known[key] != verifier:  # pragma: no cover - a key ID collision
            raise NoteError(f"two different keys are called {verifier.name}+{key[1]:08x}")
        known[key] = verifier
    return known


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise NoteError("a signature line starts with an em dash and a space")
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not space or not is_valid_name(name) or not encoded:
        raise NoteError("a signature line is: em dash, space, key name, space, signature")
    raw = _b64decode(encoded, "a signature")
    if len(raw) < 5:
        raise NoteError("a signature is a key ID and at least one byte")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def open_note(message: str | bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note and check it against the known keys.

    Raises NoteError if it is malformed, InvalidSignatureError if a known key's
    signature fails (or a known key signed twice: that is malformed too), and
    UnverifiedNoteError if no known key signed it.
    """
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("a note is UTF-8") from None
    if not _is_utf8(message) or any(ord(c) < 0x20 and c != "\n" for c in message):
        raise NoteError("a note is UTF-8 without control characters other than newline")
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has a blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("a note ends with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures")
    signatures = [_parse_signature_line(line) for line in lines]
    known = _verifier_map(verifiers)
    payload = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for signature in signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            unverified.append(signature)
            continue
        if any((s.name, s.key_id) == (signature.name, signature.key_id) for s in verified):
            raise NoteError(f"key {signature.name}+{signature.key_id:08x} signed twice")
        if not verifier.verify(payload, signature.signature):
            raise InvalidSignatureError(signature.name, signature.key_id)
        verified.append(signature)
    note = Note(text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(note)
    return note


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head (c2sp.org/tlog-checkpoint): origin, size, root hash."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _has_control(self.origin):
            raise NoteError("a checkpoint's origin is one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"a tree size is between 0 and {MAX_TREE_SIZE}")
        if len(self.root_hash) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        for line in self.extensions:
            if not line or "\n" in line or _has_control(line):
                raise NoteError("a checkpoint's extension lines are non-empty lines")

    def text(self) -> str:
        """The note text to sign."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint from a (verified) note text."""
        if not text.endswith("\n"):
            raise NoteError("a checkpoint ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("a checkpoint has an origin, a tree size and a root hash")
        origin, size, root_hash, *extensions = lines
        if not _TREE_SIZE.fullmatch(size):
            raise NoteError("a tree size is a decimal number without leading zeros")
        return cls(origin, int(size), _b64decode(root_hash, "the root hash"), tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed checkpoint note."""
    return sign_note(checkpoint.text(), [signer])


def open_checkpoint(
    message: str | bytes, verifier: Verifier, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with the log's key and read it.

    With `origin`, the checkpoint must be that log's (a key may sign for several logs).
    """
    note = open_note(message, [verifier])
    checkpoint = Checkpoint.parse(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"this checkpoint is for {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
