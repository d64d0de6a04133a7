"""The demo letters (`undersigned demo`). Original texts, written for this project."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.letters.models import Letter, LetterStatus
from app.letters.schemas import LetterCreate
from app.letters.service import create_letter, get_letter
from app.letters.translations import get_translation, set_translation

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

ICE_OUT_ES = """\
Construimos los productos que venden sus empresas. Escribimos el código, operamos los
centros de datos, respondemos a los tickets de soporte y diseñamos las interfaces a las
que millones de personas confían su vida cada día. Les escribimos porque esa confianza
se está gastando en algo de lo que nos negamos a formar parte.

Agentes del Servicio de Inmigración y Control de Aduanas (ICE) patrullan las ciudades
donde vivimos. Se llevan a nuestros vecinos a la salida de la escuela, en las paradas
de autobús y en sus lugares de trabajo. Hay familias que tienen miedo de ir al médico.
Compañeros con visa revisan las noticias antes de salir de casa. Las herramientas que
hacen posibles estas redadas —corredores de datos, contratos de nube, analítica,
vigilancia— son herramientas que construye nuestra industria.

Ustedes tienen más influencia sobre este gobierno que casi nadie. Les pedimos que la
usen.

**Nosotros, los trabajadores de la tecnología abajo firmantes, pedimos a los directores
ejecutivos de las empresas tecnológicas de Estados Unidos que:**

1. **Llamen a la Casa Blanca** y exijan que ICE salga de las ciudades de Estados Unidos.
2. **Cancelen todos los contratos** que su empresa tenga con ICE y rechacen otros
   nuevos, directamente o a través de subcontratistas y revendedores.
3. **Se pronuncien públicamente**, en su propio nombre, contra las redadas y a favor de
   las personas que viven y trabajan en nuestras comunidades.

El silencio también es una decisión, y se está notando. Estamos orgullosos de mucho de
lo que construimos. Esto no lo vamos a construir.
"""

TRANSLATIONS = {
    "ice-out": {
        "es": {
            "title": "ICE fuera: carta de los trabajadores de la tecnología a nuestros CEO",
            "summary": "Trabajadores de la tecnología piden a los CEO de las empresas "
            "tecnológicas de Estados Unidos que llamen a la Casa Blanca, cancelen sus "
            "contratos con ICE y se pronuncien.",
            "body_markdown": ICE_OUT_ES,
        }
    }
}
"""The demo letters' translations, by slug and language."""

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
    """Creates the missing ones, with their translations; returns their slugs. A demo
    letter made before it had a translation gets it (an earlier `undersigned demo`)."""
    existing = set(session.scalars(select(Letter.slug)))
    created = []
    for data in DEMO_LETTERS:
        if data.slug not in existing:
            letter = create_letter(session, data=data)
            created.append(data.slug)
        else:
            letter = get_letter(session, slug=data.slug)
        for locale, values in TRANSLATIONS.get(data.slug, {}).items():
            if get_translation(session, letter_id=letter.id, locale=locale) is None:
                set_translation(session, letter=letter, locale=locale, values=values, actor=None)
    return created
