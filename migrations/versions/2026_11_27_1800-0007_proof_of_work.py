"""Proof of work: the challenges already used to sign (replays are refused).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('spent_challenges',
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nonce_hash', name=op.f('pk_spent_challenges'))
    )
    op.create_index('ix_spent_challenges_expires_at', 'spent_challenges', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_spent_challenges_expires_at', table_name='spent_challenges')
    op.drop_table('spent_challenges')
