"""C2SP signed notes and tlog checkpoints.

Known vectors:

- golang.org/x/mod sumdb/note/note_test.go (https://github.com/golang/mod, commit
  fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db, BSD-style licence, Copyright The Go
  Authors): the PeterNeumann signer and verifier keys, the Peter Neumann quote signed
  with it (Ed25519 is deterministic, so signing must give exactly that note), the
  EnochRoot key and its signature on the same text, and the malformed messages of
  TestOpen;
- c2sp.org/signed-note (https://github.com/C2SP/C2SP signed-note.md, commit
  5ba5ee830903e91240fc6f9f3a7a9293d49e69c9): the example.com/foo verifier key and the
  note it verifies;
- golang.org/x/mod sumdb/tlog/note_test.go: a tree note (a checkpoint with origin
  "go.sum database tree") of 123456789012 leaves whose root is the leaf hash of
  "hello world".
"""

from __future__ import annotations

import pytest

from app.transparency.merkle import EMPTY_ROOT, leaf_hash
from app.transparency.note import (
    MAX_TREE_SIZE,
    Checkpoint,
    InvalidSignatureError,
    NoteError,
    Signature,
    Signer,
    UnverifiedNoteError,
    Verifier,
    key_id,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
    "KvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01o"
    "OTGwnWLox33WWd1RvMc+QQ=\n"
)
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsY"
    "jOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
GO_TREE = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"


@pytest.fixture(scope="module")
def peter() -> Verifier:
    return Verifier.parse(PETER_VKEY)


@pytest.fixture(scope="module")
def enoch() -> Verifier:
    return Verifier.parse(ENOCH_VKEY)


# --- Keys ---------------------------------------------------------------------------


def test_the_go_keys_parse_and_match() -> None:
    signer = Signer.parse(PETER_SKEY)
    verifier = Verifier.parse(PETER_VKEY)
    assert signer.verifier == verifier
    assert (verifier.name, verifier.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert verifier.vkey() == PETER_VKEY
    assert signer.skey() == PETER_SKEY
    assert key_id("PeterNeumann", b"\x01" + verifier.public_key) == 0xC74F20A3


def test_a_signer_does_not_show_its_secret() -> None:
    signer = Signer.parse(PETER_SKEY)
    assert repr(signer) == "Signer(PeterNeumann+c74f20a3)"
    assert "AYEKFALV" not in repr(signer) + str(signer)


@pytest.mark.parametrize("key", [PETER_VKEY, C2SP_VKEY])
def test_every_mangled_verifier_key_is_refused(key: str) -> None:
    """As note_test.go TestNewVerifier: every proper substring, every changed character."""
    Verifier.parse(key)
    for start in range(len(key) + 1):
        for end in range(start + 1, len(key) + 1):
            if (start, end) != (0, len(key)):
                with pytest.raises(NoteError):
                    Verifier.parse(key[start:end])
    for position in range(len(key)):
        mangled = key[:position] + chr(ord(key[position]) + 1) + key[position + 1 :]
        with pytest.raises(NoteError):
            Verifier.parse(mangled)


def test_verifier_keys_of_the_wrong_kind_or_length_are_refused() -> None:
    # From note_test.go: a longer key and an unknown algorithm, each with its key hash
    # recomputed so that only the key itself is wrong.
    for key in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper hex
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            Verifier.parse(key)


def test_every_mangled_signer_key_is_refused() -> None:
    """As note_test.go TestNewSigner."""
    for start in range(len(PETER_SKEY) + 1):
        for end in range(start + 1, len(PETER_SKEY) + 1):
            if (start, end) != (0, len(PETER_SKEY)):
                with pytest.raises(NoteError):
                    Signer.parse(PETER_SKEY[start:end])
    for position in range(len(PETER_SKEY)):
        mangled = (
            PETER_SKEY[:position] + chr(ord(PETER_SKEY[position]) + 1) + PETER_SKEY[position + 1 :]
        )
        with pytest.raises(NoteError):
            Signer.parse(mangled)


def test_generated_keys_round_trip() -> None:
    signer = Signer.generate("undersigned.example/log")
    again = Signer.parse(signer.skey())
    assert again.verifier == signer.verifier
    assert Verifier.parse(signer.verifier.vkey()) == signer.verifier
    assert Signer.generate("undersigned.example/log").verifier != signer.verifier
    for bad_name in ("", "a b", "a+b", "a\u00a0b", "tab\there"):
        with pytest.raises(NoteError, match="key name"):
            Signer.generate(bad_name)


# --- Notes --------------------------------------------------------------------------


def test_signing_gives_the_go_vector_exactly(peter: Verifier) -> None:
    message = sign_note(TEXT, [Signer.parse(PETER_SKEY)])
    assert message == TEXT + "\n" + PETER_SIG
    note = open_note(message, [peter])
    assert note.text == TEXT
    assert [(s.name, s.key_id) for s in note.signatures] == [("PeterNeumann", 0xC74F20A3)]
    assert note.unverified == ()
    assert open_note(message.encode("utf-8"), [peter]) == note


def test_the_c2sp_example_verifies() -> None:
    note = open_note(C2SP_NOTE, [Verifier.parse(C2SP_VKEY)])
    assert note.text == "This is an example message.\n"


def test_unknown_keys_are_set_aside_and_known_ones_checked(
    peter: Verifier, enoch: Verifier
) -> None:
    message = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    one = open_note(message, [peter])
    assert [s.name for s in one.signatures] == ["PeterNeumann"]
    assert [s.name for s in one.unverified] == ["EnochRoot"]
    both = open_note(message, [enoch, peter])
    assert [s.name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(UnverifiedNoteError) as raised:
        open_note(message, [])
    assert [s.name for s in raised.value.note.unverified] == ["PeterNeumann", "EnochRoot"]
    # A key with the same name but another key ID is another key: ignored, not trusted.
    other = Signer.generate("PeterNeumann")
    with pytest.raises(UnverifiedNoteError):
        open_note(message, [other.verifier])


def test_a_tampered_note_is_refused(peter: Verifier) -> None:
    message = TEXT + "\n" + PETER_SIG
    with pytest.raises(InvalidSignatureError, match="PeterNeumann\\+c74f20a3"):
        open_note(message.replace("answer", "answers"), [peter])
    with pytest.raises(InvalidSignatureError):  # one signature byte changed
        open_note(message.replace("x08go/ZJ", "x08go/ZK"), [peter])
    with pytest.raises(InvalidSignatureError):  # bytes inserted into the signature
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter])
    with pytest.raises(UnverifiedNoteError):  # another key ID: an unknown key
        open_note(message.replace("x08go/ZJ", "xxxxo/ZJ"), [peter])


def test_a_key_signs_once(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="signed twice"):
        open_note(TEXT + "\n" + PETER_SIG + PETER_SIG, [peter])
    with pytest.raises(NoteError, match="signs twice"):
        sign_note(TEXT, [Signer.parse(PETER_SKEY), Signer.parse(PETER_SKEY)])


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT.replace("\n", "\r\n") + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
        TEXT + "\n" + PETER_SIG.replace("AM=\n", "AM\n"),
        TEXT + "\n" + PETER_SIG.replace("AM=\n", "AN=\n"),
        TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",
        TEXT + "\n" + "\u2014 PeterNeumann\n",
        TEXT + "\n" + "\u2014 PeterNeumann \n",
        TEXT
        + "\n"
        + PETER_SIG
        + "".join(ENOCH_SIG.replace("EnochRoot", f"k{i}") for i in range(100)),
    ],
    ids=[
        "no signatures",
        "blank line, no signatures",
        "no final newline",
        "control character",
        "carriage returns",
        "space in the key name",
        "a line that is not a signature",
        "hyphen for the em dash",
        "unpadded base64",
        "non-canonical base64",
        "signature shorter than five bytes",
        "no signature",
        "empty signature",
        "too many signatures",
    ],
)
def test_malformed_notes_are_refused(message: str, peter: Verifier) -> None:
    assert message != TEXT + "\n" + PETER_SIG
    with pytest.raises(NoteError) as raised:
        open_note(message, [peter])
    assert not isinstance(raised.value, UnverifiedNoteError | InvalidSignatureError)


def test_a_note_may_carry_sixteen_signatures(peter: Verifier) -> None:
    """c2sp.org/signed-note: verifiers must accept at least 16 (here 15 unknown ones)."""
    others = "".join(ENOCH_SIG.replace("EnochRoot", f"k{i}") for i in range(15))
    note = open_note(TEXT + "\n" + PETER_SIG + others, [peter])
    assert (len(note.signatures), len(note.unverified)) == (1, 15)


def test_invalid_utf8_is_refused(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode("utf-8"), [peter])


def test_only_well_formed_texts_are_signed() -> None:
    signer = Signer.parse(PETER_SKEY)
    for text in ("abc", "tab\there\n", "bell\x07\n", "lone \ud800 surrogate\n"):
        with pytest.raises(NoteError):
            sign_note(text, [signer])
    with pytest.raises(NoteError, match="at least one"):
        sign_note(TEXT, [])


def test_a_text_with_blank_lines_is_signed_and_read_back() -> None:
    signer = Signer.generate("example.com/blank")
    text = "first\n\nafter a blank line\n\n"
    note = open_note(sign_note(text, [signer]), [signer.verifier])
    assert note.text == text


def test_a_key_id_must_match_its_key() -> None:
    # The same verifier listed twice is harmless; a key under another key's name and ID
    # is refused when it is made (two keys sharing one only come from a 32-bit collision).
    note = open_note(TEXT + "\n" + PETER_SIG, [Verifier.parse(PETER_VKEY)] * 2)
    assert len(note.signatures) == 1
    with pytest.raises(NoteError, match="key ID"):
        Verifier("PeterNeumann", 0xC74F20A3, Signer.generate("x").verifier.public_key)


def test_signature_lines_are_written_like_go() -> None:
    signature = Signature("PeterNeumann", 0xC74F20A3, b"\x00" * 64)
    assert signature.line().startswith("\u2014 PeterNeumann x08go")
    assert signature.line().endswith("=\n")


# --- Checkpoints --------------------------------------------------------------------


def test_the_go_tree_note_is_a_checkpoint() -> None:
    checkpoint = Checkpoint.parse(GO_TREE)
    assert checkpoint == Checkpoint("go.sum database tree", 123456789012, leaf_hash(b"hello world"))
    assert checkpoint.text() == GO_TREE


def test_checkpoints_round_trip_with_extension_lines() -> None:
    checkpoint = Checkpoint("example.com/log", 0, EMPTY_ROOT, ("ext one", "ext two"))
    text = checkpoint.text()
    assert text == (
        "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next two\n"
    )
    assert Checkpoint.parse(text) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        GO_TREE[:-1],
        "go.sum database tree\n123456789012\n",
        "\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n0123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n+123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n-1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n 1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        GO_TREE.replace("123456789012", str(MAX_TREE_SIZE + 1)),
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n",
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwB\n",
        "go.sum database tree\n123456789012\nAAAA\n",
        GO_TREE + "\n",
    ],
    ids=[
        "no final newline",
        "no root hash",
        "empty origin",
        "hex size",
        "leading zero",
        "plus sign",
        "negative size",
        "space before the size",
        "size beyond int64",
        "not base64",
        "non-canonical base64",
        "unpadded base64",
        "short hash",
        "empty extension line",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


def test_a_signed_checkpoint_verifies_and_its_tampering_does_not() -> None:
    signer = Signer.generate("undersigned.example/log")
    checkpoint = Checkpoint("undersigned.example/letters/a", 8311, leaf_hash(b"entry"))
    signed = sign_checkpoint(checkpoint, signer)
    assert signed.startswith(checkpoint.text() + "\n\u2014 undersigned.example/log ")
    assert open_checkpoint(signed, signer.verifier) == checkpoint
    assert (
        open_checkpoint(signed, signer.verifier, origin="undersigned.example/letters/a")
        == checkpoint
    )
    with pytest.raises(NoteError, match=r"not 'undersigned\.example/letters/b'"):
        open_checkpoint(signed, signer.verifier, origin="undersigned.example/letters/b")
    with pytest.raises(InvalidSignatureError):  # a bigger count under the same signature
        open_checkpoint(signed.replace("\n8311\n", "\n8312\n"), signer.verifier)
    with pytest.raises(UnverifiedNoteError):  # signed by another key
        open_checkpoint(signed, Signer.generate("undersigned.example/log").verifier)
