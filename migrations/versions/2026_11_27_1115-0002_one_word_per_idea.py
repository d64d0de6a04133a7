"""One word per idea (organization, city); the outbox no longer points at signatures.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 11:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('signatures') as batch:
        batch.alter_column('affiliation', new_column_name='organization')
        batch.alter_column('location', new_column_name='city')
    with op.batch_alter_table('outbox_emails') as batch:
        batch.drop_index('ix_outbox_emails_signature_id')
        batch.drop_constraint('fk_outbox_emails_signature_id_signatures', type_='foreignkey')
        batch.drop_column('signature_id')


def downgrade() -> None:
    with op.batch_alter_table('outbox_emails') as batch:
        batch.add_column(sa.Column('signature_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(
            'fk_outbox_emails_signature_id_signatures', 'signatures', ['signature_id'], ['id'],
            ondelete='SET NULL',
        )
        batch.create_index('ix_outbox_emails_signature_id', ['signature_id'], unique=False)
    with op.batch_alter_table('signatures') as batch:
        batch.alter_column('organization', new_column_name='affiliation')
        batch.alter_column('city', new_column_name='location')
