"""An independent check of a letter's signature log, over HTTP only.

`verify_letter` reads what any reader can read (the public log API of
docs/transparency.md) and trusts nothing but the log's public key. It uses no database,
no settings and no other part of the app than `app.transparency`, so it checks a server
it does not run, and a reader can copy it (with `app/transparency/`) to run elsewhere:

1. the latest checkpoint: its signed note must verify with the key and name this letter
   (its origin is `<host>/letters/<slug>`), and the JSON around it must agree with it;
2. every entry, in pages of 1,000, into a `Frontier` (the Merkle part needs constant
   memory): each leaf must be well formed and agree with its fields, each removal must
   remove a signature then counted and each restore one then removed; the entries must
   rebuild the signed root, and adds minus removes must equal the published count;
3. the public tally (`signature_count`) must equal that count, or differ by no more than
   the changes the server says are not yet sequenced;
4. with a checkpoint saved earlier (`since`): it must verify with the same key, the
   entries must rebuild its root at its size, and the server's consistency proof from it
   to the latest must hold (the log only grew: no entry was rewritten or taken out);
5. a few inclusion proofs, at random, must lead to the signed root.

A `Report` lists the problems found (sentences for a person) and the facts checked.
`FetchError` means nothing could be checked (the server did not answer as the API says
it answers: network error, HTTP error, not JSON); `UsageError` a bad URL or key.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from app.transparency.merkle import (
    HASH_SIZE,
    Frontier,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from app.transparency.note import (
    Checkpoint,
    InvalidSignatureError,
    NoteError,
    UnverifiedNoteError,
    Verifier,
    open_note,
)

PAGE = 1000
"""Entries per request: the API's maximum."""
SPOT_CHECKS = 3
"""Inclusion proofs checked at random (besides rebuilding the whole tree)."""
MAX_RESPONSE = 8 * 1024 * 1024
"""A longer answer is refused (a page of 1,000 entries is about 300 kB)."""
MAX_LISTED = 20
"""Problems with single entries listed one by one; the rest are counted."""
USER_AGENT = "undersigned-log-verify/1"

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LEAF = re.compile(
    r"undersigned-log/v1 (add|remove) ([a-z]+) "
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}):00:00Z ([0-9a-f]{64})"
)
ADDING = frozenset({"confirmed", "restored"})
REMOVING = frozenset({"withdrawn", "duplicate", "bot", "invalid"})

# What a commitment is, as the entries so far say: counted, removed by a moderator (it
# may be restored), or withdrawn by its signer (for good).
_COUNTED, _REMOVED, _WITHDRAWN = 1, 2, 3


class UsageError(ValueError):
    """The URL is not a letter's, or the key is not a verifier key."""


class FetchError(RuntimeError):
    """The server could not be asked, or did not answer with what the API promises."""


class Client(Protocol):
    def get(self, url: str, *, fresh: bool = False) -> bytes:
        """The body of a 200 answer to GET `url`; FetchError otherwise. `fresh`: ask
        caches on the way for an up-to-date answer (the latest checkpoint, the tally)."""
        ...


class UrllibClient:
    """GET over HTTP(S) with the standard library."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def get(self, url: str, *, fresh: bool = False) -> bytes:
        if urlsplit(url).scheme not in ("http", "https"):
            raise FetchError(f"{url}: only http and https URLs are fetched")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, text/plain"}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - checked above
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body: bytes = response.read(MAX_RESPONSE + 1)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise FetchError(f"{url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"{url}: {exc}") from None
        if len(body) > MAX_RESPONSE:
            raise FetchError(f"{url}: the answer is longer than {MAX_RESPONSE:,} bytes")
        return body


@dataclass(frozen=True)
class LetterURL:
    """A letter's public URL, `<scheme>://<host>[/<path>]/letters/<slug>`, and what it
    implies: where the API is and which origin the letter's checkpoints must name."""

    site: str
    slug: str
    origin: str

    @property
    def letter_api(self) -> str:
        return f"{self.site}/api/v1/letters/{self.slug}"

    @property
    def log_api(self) -> str:
        return f"{self.letter_api}/log"

    @property
    def key_url(self) -> str:
        return f"{self.site}/.well-known/undersigned-log-key"


def parse_letter_url(url: str) -> LetterURL:
    parts = urlsplit(url.strip())
    base, separator, rest = parts.path.rpartition("/letters/")
    slug = rest.rstrip("/")
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or not separator
        or not _SLUG.fullmatch(slug)
    ):
        raise UsageError(f"{url!r} is not a letter's URL (https://<host>/letters/<slug>)")
    return LetterURL(
        site=f"{parts.scheme}://{parts.netloc}{base}",
        slug=slug,
        origin=f"{parts.netloc}{base}/letters/{slug}",
    )


def parse_key(text: str) -> Verifier:
    """A verifier key (`<name>+<key ID>+<base64>`, as /.well-known/undersigned-log-key
    serves it)."""
    try:
        return Verifier.parse(text.strip())
    except NoteError as exc:
        raise UsageError(f"not a log key: {exc}") from None


def fetch_key(url: str, *, client: Client | None = None) -> Verifier:
    """The key the server itself publishes. Trust on first use: a server that lies about
    its log would lie about its key too; compare it with one published elsewhere."""
    answer = (client or UrllibClient()).get(parse_letter_url(url).key_url, fresh=True)
    try:
        text = answer.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("the server's log key is not text") from None
    try:
        return parse_key(text)
    except UsageError as exc:
        raise FetchError(f"the server's log key: {exc}") from None


@dataclass
class Report:
    """What `verify_letter` found. `problems` empty: verified."""

    url: str
    origin: str
    key: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Worth knowing, not wrong (changes not yet sequenced, restores of signatures
    removed before the log began)."""
    size: int | None = None
    root_hash: bytes | None = None
    adds: int | None = None
    """Counted from the entries themselves (None until they all were read)."""
    removes: int | None = None
    created_at: str | None = None
    """When the server says it signed the checkpoint (not part of the signed note)."""
    tally: int | None = None
    unsequenced: int | None = None
    note: str | None = None
    """The checkpoint's signed note, once its signature verified (what `--save` keeps)."""
    since_size: int | None = None
    """The size of the saved checkpoint the log was shown to extend."""
    inclusion_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def count(self) -> int | None:
        if self.adds is None or self.removes is None:
            return None
        return self.adds - self.removes

    @property
    def root_base64(self) -> str | None:
        return None if self.root_hash is None else base64.b64encode(self.root_hash).decode()


class _Malformed(Exception):
    """An answer that does not have the shape the API promises (a problem of the log)."""


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise FetchError(f"{what}: the answer is not JSON") from None
    if not isinstance(value, dict):
        raise _Malformed(f"{what}: the answer is not a JSON object")
    return value


def _int(data: dict[str, Any], name: str, what: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Malformed(f"{what}: {name!r} is not a whole number")
    return value


def _str(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _Malformed(f"{what}: {name!r} is not text")
    return value


def _hash(value: object, what: str) -> bytes:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == HASH_SIZE:
            return raw
    raise _Malformed(f"{what}: not a base64 SHA-256 hash")


def _hashes(data: dict[str, Any], what: str) -> list[bytes]:
    values = data.get("hashes")
    if not isinstance(values, list):
        raise _Malformed(f"{what}: 'hashes' is not a list")
    return [_hash(value, what) for value in values]


def _open(note_text: str, verifier: Verifier, origin: str, what: str) -> Checkpoint:
    """The checkpoint in a signed note, or _Malformed with the reason it is refused."""
    try:
        checkpoint = Checkpoint.parse(open_note(note_text, [verifier]).text)
    except UnverifiedNoteError:
        raise _Malformed(
            f"{what} is not signed by the key {verifier.vkey()} (a different key signed it)"
        ) from None
    except InvalidSignatureError:
        raise _Malformed(f"{what} has an invalid signature by the key {verifier.vkey()}") from None
    except NoteError as exc:
        raise _Malformed(f"{what} is not a valid signed checkpoint: {exc}") from None
    if checkpoint.origin != origin:
        raise _Malformed(
            f"{what} is signed for the log {checkpoint.origin!r}, not this letter's ({origin!r})"
        )
    return checkpoint


def verify_letter(
    url: str,
    key: Verifier | str,
    since: str | None = None,
    *,
    client: Client | None = None,
    spot_checks: int = SPOT_CHECKS,
) -> Report:
    """Checks the letter's log as the module docstring says. Raises UsageError (bad URL
    or key) and FetchError (the server did not answer); every other finding is in the
    report."""
    letter = parse_letter_url(url)
    verifier = key if isinstance(key, Verifier) else parse_key(key)
    report = Report(url=url, origin=letter.origin, key=verifier.vkey())
    try:
        _verify(letter, verifier, since, client or UrllibClient(), spot_checks, report)
    except _Malformed as exc:
        report.problems.append(_sentence(str(exc)))
    return report


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _verify(
    letter: LetterURL,
    verifier: Verifier,
    since: str | None,
    client: Client,
    spot_checks: int,
    report: Report,
) -> None:
    what = "the latest checkpoint"
    answer = _json(client.get(f"{letter.log_api}/checkpoint", fresh=True), what)
    checkpoint = _open(_str(answer, "note", what), verifier, letter.origin, what)
    report.note = _str(answer, "note", what)
    report.size, report.root_hash = checkpoint.size, checkpoint.root_hash
    report.unsequenced = _int(answer, "unsequenced", what)
    created_at = answer.get("created_at")
    report.created_at = created_at if isinstance(created_at, str) else None
    claimed = _claimed(answer, checkpoint, letter, verifier, report)
    report.tally = _tally(client, letter)

    saved = _saved(since, verifier, letter, report) if since is not None else None
    if saved is not None:
        _check_consistency(client, letter, saved, checkpoint, report)

    spots = _spots(checkpoint.size, spot_checks)
    leaves = _read_entries(client, letter, checkpoint, saved, spots, report)
    for index in sorted(leaves):
        _check_inclusion(client, letter, index, leaves[index], checkpoint, report)
    _check_count(claimed, report)


def _claimed(
    answer: dict[str, Any],
    checkpoint: Checkpoint,
    letter: LetterURL,
    verifier: Verifier,
    report: Report,
) -> tuple[int, int, int]:
    """The JSON's own claims, checked against the signed note; (adds, removes, count)."""
    what = "the latest checkpoint"
    if answer.get("origin") != letter.origin:
        report.problems.append(
            f"The checkpoint's JSON names the log {answer.get('origin')!r}, "
            f"its signed note {letter.origin!r}."
        )
    if _int(answer, "size", what) != checkpoint.size:
        report.problems.append(
            f"The checkpoint's JSON says size {answer['size']:,}, "
            f"its signed note {checkpoint.size:,}."
        )
    if _hash(answer.get("root_hash"), what) != checkpoint.root_hash:
        report.problems.append("The checkpoint's JSON has another root hash than its signed note.")
    served_key = answer.get("key")
    if isinstance(served_key, str) and served_key != verifier.vkey():
        report.notes.append(
            f"The server names another key ({served_key}) than the one checked with; "
            "the checkpoint is signed by the one checked with."
        )
    return _int(answer, "adds", what), _int(answer, "removes", what), _int(answer, "count", what)


def _tally(client: Client, letter: LetterURL) -> int:
    what = "the letter"
    answer = _json(client.get(letter.letter_api, fresh=True), what)
    value = answer.get("signature_count")
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"{what}: 'signature_count' is not a whole number")
    return value


def _saved(since: str, verifier: Verifier, letter: LetterURL, report: Report) -> Checkpoint | None:
    """The saved checkpoint, when it verifies (else a problem, and None)."""
    try:
        return _open(since, verifier, letter.origin, "The saved checkpoint")
    except _Malformed as exc:
        report.problems.append(_sentence(str(exc)))
        return None


def _check_consistency(
    client: Client, letter: LetterURL, saved: Checkpoint, latest: Checkpoint, report: Report
) -> None:
    """That the latest tree extends the saved one (the server's proof; the entries are
    checked against the saved root as they are read, too)."""
    if saved.size > latest.size:
        report.problems.append(
            f"The log shrank: the saved checkpoint has {saved.size:,} entries, "
            f"the latest only {latest.size:,}. Its history was rewritten."
        )
        return
    if saved.size == latest.size:
        if saved.root_hash != latest.root_hash:
            report.problems.append(
                f"Two different signed roots for the same size {saved.size:,}: "
                "the log's history was rewritten."
            )
        else:
            report.since_size = saved.size
        return
    if saved.size == 0:
        report.since_size = 0
        return
    what = "the consistency proof"
    query = urlencode({"first": saved.size, "second": latest.size})
    answer = _json(client.get(f"{letter.log_api}/proof/consistency?{query}"), what)
    try:
        verify_consistency(
            saved.size, latest.size, saved.root_hash, latest.root_hash, _hashes(answer, what)
        )
    except (ProofError, _Malformed) as exc:
        report.problems.append(
            f"The log's history was rewritten: the latest checkpoint ({latest.size:,} entries) "
            f"does not extend the saved one ({saved.size:,} entries): {exc}."
        )
        return
    report.since_size = saved.size


def _spots(size: int, wanted: int) -> set[int]:
    """Entries whose inclusion proofs are asked for: the last one and a few at random."""
    if size == 0 or wanted <= 0:
        return set()
    spots = {size - 1}
    while len(spots) < min(wanted, size):
        spots.add(secrets.randbelow(size))
    return spots


@dataclass
class _Entries:
    """The state of a streamed log: counts and what each commitment is now."""

    adds: int = 0
    removes: int = 0
    restored_unseen: int = 0
    states: dict[bytes, int] = field(default_factory=dict)
    problems: int = 0


def _read_entries(
    client: Client,
    letter: LetterURL,
    checkpoint: Checkpoint,
    saved: Checkpoint | None,
    spots: set[int],
    report: Report,
) -> dict[int, bytes]:
    """Streams entries [0, size), checks each one, rebuilds the root; returns the leaf
    hashes at `spots`."""
    frontier = Frontier()
    state = _Entries()
    leaves: dict[int, bytes] = {}
    for start in range(0, checkpoint.size, PAGE):
        end = min(start + PAGE, checkpoint.size)
        for index, entry in enumerate(_page(client, letter, start, end), start):
            leaf = _check_entry(index, entry, state, report)
            hashed = leaf_hash(leaf)
            frontier.append(hashed)
            if index in spots:
                leaves[index] = hashed
            if saved is not None and frontier.size == saved.size:
                _check_saved_root(frontier, saved, report)
    if state.problems > MAX_LISTED:
        report.problems.append(
            f"… and {state.problems - MAX_LISTED:,} more entries with a problem like these."
        )
    if frontier.root() != checkpoint.root_hash:
        report.problems.append(
            f"The entries do not rebuild the signed root: entries 0 to {checkpoint.size - 1:,} "
            f"hash to {base64.b64encode(frontier.root()).decode()}, the checkpoint signs "
            f"{base64.b64encode(checkpoint.root_hash).decode()}. An entry was changed, added "
            "or taken out after it was logged."
            if checkpoint.size
            else "The empty log's checkpoint does not sign the empty tree's root."
        )
    if state.restored_unseen:
        report.notes.append(
            f"{state.restored_unseen:,} restored signatures had been removed before the log "
            "began (their removal is not in it)."
        )
    report.adds, report.removes = state.adds, state.removes
    return leaves


def _page(client: Client, letter: LetterURL, start: int, end: int) -> list[dict[str, Any]]:
    what = f"entries {start:,} to {end - 1:,}"
    query = urlencode({"start": start, "end": end})
    answer = _json(client.get(f"{letter.log_api}/entries?{query}"), what)
    entries = answer.get("entries")
    if (
        answer.get("start") != start
        or answer.get("end") != end
        or not isinstance(entries, list)
        or len(entries) != end - start
    ):
        raise _Malformed(f"{what}: the server did not send exactly these {end - start:,} entries")
    for index, entry in enumerate(entries, start):
        if not isinstance(entry, dict) or entry.get("index") != index:
            raise _Malformed(f"{what}: entry {index:,} is missing or out of place")
    return entries


def _check_saved_root(frontier: Frontier, saved: Checkpoint, report: Report) -> None:
    if frontier.root() != saved.root_hash:
        report.since_size = None
        report.problems.append(
            f"The log's history was rewritten: its first {saved.size:,} entries no longer "
            "rebuild the root of the saved checkpoint."
        )


def _entry_problem(state: _Entries, report: Report, message: str) -> None:
    state.problems += 1
    if state.problems <= MAX_LISTED:
        report.problems.append(message)


def _check_entry(index: int, entry: dict[str, Any], state: _Entries, report: Report) -> bytes:
    """The leaf's bytes (what is hashed, whatever its shape); problems noted."""
    leaf = entry.get("leaf")
    if not isinstance(leaf, str) or not leaf.isascii():
        _entry_problem(state, report, f"Entry {index:,} has no leaf text.")
        return leaf.encode("utf-8", "replace") if isinstance(leaf, str) else b""
    match = _LEAF.fullmatch(leaf)
    if match is None:
        _entry_problem(state, report, f"Entry {index:,} is not a v1 log entry: {leaf!r}.")
        return leaf.encode("ascii")
    event, reason, hour, commitment = match.groups()
    if (event == "add" and reason not in ADDING) or (event == "remove" and reason not in REMOVING):
        _entry_problem(state, report, f"Entry {index:,}: '{event}' with reason '{reason}'.")
        return leaf.encode("ascii")
    if not _fields_agree(entry, event, reason, hour, commitment):
        _entry_problem(
            state, report, f"Entry {index:,}: its fields say something else than its leaf."
        )
    _apply(index, event, reason, bytes.fromhex(commitment), state, report)
    return leaf.encode("ascii")


def _fields_agree(
    entry: dict[str, Any], event: str, reason: str, hour: str, commitment: str
) -> bool:
    served_hour = entry.get("hour")
    try:
        moment = datetime.fromisoformat(served_hour) if isinstance(served_hour, str) else None
    except ValueError:
        moment = None
    return (
        entry.get("event") == event
        and entry.get("reason") == reason
        and entry.get("commitment") == commitment
        and moment is not None
        and moment.utcoffset() is not None
        and moment.astimezone(UTC) == datetime.fromisoformat(f"{hour}:00:00+00:00")
    )


def _apply(
    index: int, event: str, reason: str, commitment: bytes, state: _Entries, report: Report
) -> None:
    """One change to the count: it must fit what the earlier entries say of this
    signature."""
    now = state.states.get(commitment)
    if event == "add":
        state.adds += 1
        if reason == "confirmed" and now is not None:
            _entry_problem(state, report, f"Entry {index:,} adds a signature already added.")
        elif reason == "restored" and now == _COUNTED:
            _entry_problem(state, report, f"Entry {index:,} restores a signature still counted.")
        elif reason == "restored" and now == _WITHDRAWN:
            _entry_problem(state, report, f"Entry {index:,} restores a withdrawn signature.")
        elif reason == "restored" and now is None:
            # Removed before the log began (migration 0011 logged only counted ones).
            state.restored_unseen += 1
        state.states[commitment] = _COUNTED
        return
    state.removes += 1
    if now != _COUNTED:
        _entry_problem(
            state, report, f"Entry {index:,} removes ({reason}) a signature that was not counted."
        )
    state.states[commitment] = _WITHDRAWN if reason == "withdrawn" else _REMOVED


def _check_inclusion(
    client: Client,
    letter: LetterURL,
    index: int,
    leaf: bytes,
    checkpoint: Checkpoint,
    report: Report,
) -> None:
    what = f"the inclusion proof of entry {index:,}"
    query = urlencode({"index": index, "size": checkpoint.size})
    answer = _json(client.get(f"{letter.log_api}/proof/inclusion?{query}"), what)
    try:
        verify_inclusion(leaf, index, checkpoint.size, _hashes(answer, what), checkpoint.root_hash)
    except (ProofError, _Malformed) as exc:
        report.problems.append(
            f"Entry {index:,} as served is not in the signed tree (its inclusion proof "
            f"fails: {exc})."
        )
        return
    report.inclusion_checked += 1


def _check_count(claimed: tuple[int, int, int], report: Report) -> None:
    adds, removes, count = claimed
    if report.adds is None or report.removes is None or report.count is None:
        return
    if (adds, removes) != (report.adds, report.removes) or count != adds - removes:
        report.problems.append(
            f"The checkpoint says {adds:,} adds - {removes:,} removes = {count:,}; "
            f"its entries hold {report.adds:,} - {report.removes:,} = {report.count:,}."
        )
    tally, waiting = report.tally, report.unsequenced or 0
    if tally is None or tally == report.count:
        return
    difference = tally - report.count
    if abs(difference) <= waiting:
        report.notes.append(
            f"The public count is {tally:,}, {abs(difference):,} "
            f"{'more' if difference > 0 else 'fewer'} than the log's: {waiting:,} changes "
            "were not yet sequenced. Check again in a few seconds."
        )
        return
    report.problems.append(
        f"The public count ({tally:,}) disagrees with the log ({report.count:,}) by "
        f"{difference:+,}, more than the {waiting:,} changes not yet sequenced."
    )
