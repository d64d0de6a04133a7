"""The activity page's index on submissions leads with the time, not the letter.

`(letter_id, created_at)` is smaller than the address index `(letter_id, email_hash)`,
so while a fresh table has no statistics (the first minute of a letter's launch, before
autovacuum's first ANALYZE) PostgreSQL picked it for a confirmation's address lookup and
read every submission of the letter to find one address. `(created_at, letter_id)`
still serves the activity page's window of one letter, and an address is then found
only through the address index (D181).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 06:00:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain DROP/CREATE INDEX (no batch copy of the table: SQLite's search triggers stay).
    op.drop_index('ix_pending_signatures_letter_id_created_at', table_name='pending_signatures')
    op.create_index(
        'ix_pending_signatures_created_at_letter_id',
        'pending_signatures',
        ['created_at', 'letter_id'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_pending_signatures_created_at_letter_id', table_name='pending_signatures')
    op.create_index(
        'ix_pending_signatures_letter_id_created_at',
        'pending_signatures',
        ['letter_id', 'created_at'],
        unique=False,
    )
