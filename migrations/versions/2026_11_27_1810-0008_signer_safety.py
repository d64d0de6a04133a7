"""Signer safety: verified-domain badges, names shown only in numbers, organization
sign-on letters, company names for domains, signatures checked by the organizers, and
the letter's forgetting periods.

Plain ADD COLUMN on the signature tables (no batch copy: SQLite's search triggers on
`signatures` stay); a batch on `letters` for its CHECK constraint.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNER_TABLES = ('pending_signatures', 'signatures')


def upgrade() -> None:
    for table in SIGNER_TABLES:
        op.add_column(table, sa.Column('show_domain', sa.Boolean(), nullable=False, server_default=sa.false()))
        op.add_column(table, sa.Column('name_threshold', sa.Integer(), nullable=True))
    op.add_column('signatures', sa.Column('organizer_confirmed', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signers', sa.Enum('people', 'organizations', name='signer_kind', native_enum=False, create_constraint=True, length=16), nullable=False, server_default='people'))
        batch_op.add_column(sa.Column('domain_names', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('contact_retention_days', sa.Integer(), nullable=False, server_default='90'))
        batch_op.add_column(sa.Column('anonymize_after_months', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('anonymized_at', app.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('letters', schema=None) as batch_op:
        batch_op.drop_column('anonymized_at')
        batch_op.drop_column('anonymize_after_months')
        batch_op.drop_column('contact_retention_days')
        batch_op.drop_column('domain_names')
        batch_op.drop_constraint(op.f('ck_letters_signer_kind'), type_='check')
        batch_op.drop_column('signers')
    op.drop_column('signatures', 'organizer_confirmed')
    for table in SIGNER_TABLES:
        op.drop_column(table, 'name_threshold')
        op.drop_column(table, 'show_domain')
