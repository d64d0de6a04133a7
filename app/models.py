"""Imports every model module so that Base.metadata is complete."""

from __future__ import annotations


def import_all() -> None:
    import app.abuse.models
    import app.keycheck
    import app.letters.models
    import app.mail.models
    import app.organizers.models
    import app.signatures.models
    import app.signlog.models
    import app.updates.models  # noqa: F401
