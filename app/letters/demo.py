"""The demo letters (`undersigned demo`). Original texts, written for this project."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.letters.models import Letter, LetterStatus
from app.letters.schemas import LetterCreate
from app.letters.service import create_letter

ICE_OUT = """\
We build the products your companies sell. We write the code, run the data centres,
answer the support tickets and design the interfaces that millions of people trust
with their lives every day. We are writing to you because that trust is being spent
on something we refuse to be part of.

Agents of Immigration and Customs Enforcement are patrolling the cities we live in.
Our neighbours are being taken from school pick-up lines, bus stops and workplaces.
Families are afraid to go to the doctor. Colleagues on visas check the news before
they leave the house. The tools that make these raids possible — data brokers,
cloud contracts, analytics, surveillance — are tools our industry builds.

You have more influence over this administration than almost anyone. We ask you to
use it.

**We, the undersigned technology workers, ask the chief executives of U.S.
technology companies to:**

1. **Call the White House** and demand that ICE leave U.S. cities.
2. **Cancel every contract** your company holds with ICE, and refuse new ones,
   directly or through subcontractors and resellers.
3. **Speak out publicly**, in your own name, against the raids and for the people
   who live and work in our communities.

Silence is also a choice, and it is being noticed. We are proud of much of what we
build. We will not build this.
"""

DE_ESCALATION = """\
We write as owners and leaders of businesses large and small: shops, restaurants,
factories, clinics and software firms that employ and serve people of every
background.

Our cities work because people can go to work, open their doors and move about
without fear. Recent enforcement surges, the deployment of armed federal units on
city streets and the rhetoric that surrounds them are doing real harm: workers stay
home, customers stay away, and long-standing employees are detained without warning.

**We urge federal, state and city leaders to de-escalate:**

- withdraw militarised enforcement operations from city centres;
- restore clear, lawful and accountable procedures, with due process for everyone;
- meet with local employers, workers and community groups before, not after,
  decisions that upend our neighbourhoods.

Stability is good for business and good for everyone. We are ready to help build it.
"""

# Created in this order, so that with equal tallies the main letter (newest) lists first.
DEMO_LETTERS = [
    LetterCreate(
        slug="business-for-de-escalation",
        title="Business leaders for de-escalation",
        summary="A coalition of employers urges leaders at every level to de-escalate "
        "enforcement operations in our cities.",
        body_markdown=DE_ESCALATION,
        addressed_to="Federal, state and city leaders",
        goal=1_000,
        status=LetterStatus.OPEN,
    ),
    LetterCreate(
        slug="ice-out",
        title="ICE out: a letter from tech workers to our CEOs",
        summary="Tech workers ask the CEOs of U.S. technology companies to call the "
        "White House, cancel their contracts with ICE and speak out.",
        body_markdown=ICE_OUT,
        addressed_to="The chief executives of U.S. technology companies",
        from_name="Tech workers for our neighbours",
        goal=10_000,
        status=LetterStatus.OPEN,
    ),
]


def create_demo_letters(session: Session) -> list[str]:
    """Creates the missing ones; returns their slugs."""
    existing = set(session.scalars(select(Letter.slug)))
    created = []
    for data in DEMO_LETTERS:
        if data.slug not in existing:
            create_letter(session, data=data)
            created.append(data.slug)
    return created
