"""Reach: letters in two languages, a signer's (and a sign-in request's) language, an
accent colour and a header image.

Plain ADD and DROP COLUMN on the signature tables (no batch copy: SQLite's search
triggers on `signatures` stay).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('letters', sa.Column('accent_color', sa.String(length=7), nullable=True))
    for table in ('pending_signatures', 'signatures', 'login_links'):
        op.add_column(
            table, sa.Column('locale', sa.String(length=8), server_default='en', nullable=False)
        )
    op.create_table(
        'letter_translations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('letter_id', sa.Integer(), nullable=False),
        sa.Column('locale', sa.String(length=8), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('summary', sa.String(length=500), nullable=False),
        sa.Column('body_markdown', sa.Text(), nullable=False),
        sa.Column('body_html', sa.Text(), nullable=False),
        sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['letter_id'], ['letters.id'],
            name=op.f('fk_letter_translations_letter_id_letters'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_letter_translations')),
    )
    op.create_index(
        'uq_letter_translations_letter_id_locale',
        'letter_translations', ['letter_id', 'locale'], unique=True,
    )
    op.create_table(
        'letter_images',
        sa.Column('letter_id', sa.Integer(), nullable=False),
        sa.Column('content_type', sa.String(length=40), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['letter_id'], ['letters.id'],
            name=op.f('fk_letter_images_letter_id_letters'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('letter_id', name=op.f('pk_letter_images')),
    )


def downgrade() -> None:
    op.drop_table('letter_images')
    op.drop_index('uq_letter_translations_letter_id_locale', table_name='letter_translations')
    op.drop_table('letter_translations')
    for table in ('login_links', 'signatures', 'pending_signatures'):
        op.drop_column(table, 'locale')
    op.drop_column('letters', 'accent_color')
