"""The sign routes' proof-of-work gate (D69), shared by the form and the API, and the
challenge the widget asks for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from app.abuse import proof
from app.abuse import service as abuse
from app.config import ProofOfWork, Settings
from app.errors import InvalidInput
from app.i18n import N_
from app.letters import service as letters
from app.letters.api import LetterSlug
from app.web import ratelimit
from app.web.client import client_of
from app.web.deps import AppSettings, ReadSession
from app.web.errors import error_responses

FIELD = "altcha"
"""The form field (and API property) that carries the widget's solution."""
REFUSED = {
    proof.ProofResult.INVALID: N_(
        "The check that you are a person did not work. Please try again."
    ),
    proof.ProofResult.REPLAYED: N_(
        "The check that you are a person did not work. Please try again."
    ),
    proof.ProofResult.EXPIRED: N_("The check that you are a person has expired. Please try again."),
}
EVENTS = {
    proof.ProofResult.INVALID: abuse.EventKind.PROOF_FAILED,
    proof.ProofResult.REPLAYED: abuse.EventKind.PROOF_REPLAYED,
}


def asked_for(request: Request, settings: Settings, slug: str) -> bool:
    """Whether the letter's sign form asks for proof of work right now."""
    busy = settings.proof_of_work == ProofOfWork.AUTO and ratelimit.letter_is_busy(request, slug)
    return proof.asked_for(settings, busy=busy)


def require_proof(
    request: Request, session: Session, settings: Settings, *, slug: str, payload: str
) -> None:
    """Lets a sign request through, or refuses it, before any work on its address (so
    the answer and its timing never depend on who signs).

    - A solution, when sent, must be good: else InvalidInput on the `altcha` field (a
      bad or replayed one is recorded as an AbuseEvent in the request's transaction;
      an expired one is taken for a person who left the form open).
    - No solution while the letter asks for one (no JavaScript, or a bot): the tighter
      RATE_LIMIT_SIGN_UNPROVEN limits, per client and per letter (RateLimited: 429).
    """
    if not payload:
        if asked_for(request, settings, slug):
            ratelimit.check(request, ratelimit.SIGN_UNPROVEN, letter_slug=slug)
            ratelimit.check(
                request, ratelimit.SIGN_UNPROVEN_LETTER, subject="letter", letter_slug=slug
            )
        return
    result = proof.check(session, settings, payload=payload, letter_slug=slug)
    if result == proof.ProofResult.VERIFIED:
        return
    kind = EVENTS.get(result)
    if kind is not None:
        abuse.record_from(
            session, kind=kind, secret_key=settings.secret, ip=client_of(request), letter_slug=slug
        )
    raise InvalidInput(REFUSED[result], fields={FIELD: REFUSED[result]})


# --- The challenge ---------------------------------------------------------------------


class ChallengeParameters(BaseModel):
    """ALTCHA's own field names (camelCase)."""

    model_config = ConfigDict(extra="allow")

    algorithm: str = Field(examples=[proof.ALGORITHM])
    cost: int = Field(description="PBKDF2 iterations per try.")
    keyLength: int
    keyPrefix: str = Field(description="Hex prefix the derived key must start with.")
    nonce: str
    salt: str
    expiresAt: int = Field(description="Unix time after which a solution is refused.")
    data: dict[str, Any] = Field(description='`{"letter": slug}`: the letter it is for.')


class ChallengeOut(BaseModel):
    """An ALTCHA v2 challenge (https://altcha.org), signed by this server."""

    parameters: ChallengeParameters
    signature: str


router = APIRouter(
    prefix="/api/v1", tags=["signatures"], dependencies=[Depends(ratelimit.limit_api)]
)


@router.get(
    "/letters/{slug}/challenge",
    response_model=ChallengeOut,
    responses=error_responses(404),
    response_description="A new challenge, never cached.",
)
def challenge(
    slug: LetterSlug,
    session: ReadSession,
    settings: AppSettings,
) -> JSONResponse:
    """A proof-of-work challenge for signing this letter: solve it (the ALTCHA widget
    does) and send the base64 solution as `altcha` with the signature. Always
    available; whether a letter asks for one right now shows on its sign form."""
    found = letters.get_public_letter(session, slug=slug)
    body = proof.new_challenge(settings, letter_slug=found.letter.slug)
    return JSONResponse(body, headers={"cache-control": "no-store"})
