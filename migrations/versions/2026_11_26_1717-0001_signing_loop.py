"""The signing loop: letters, their tallies, signatures and the email outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 17:17:54.090041
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=80), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('body_markdown', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('addressed_to', sa.String(length=300), nullable=False),
    sa.Column('goal', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('draft', 'open', 'closed', name='letter_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('closes_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('published_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_letters')),
    sa.UniqueConstraint('slug', name=op.f('uq_letters_slug'))
    )
    op.create_table('letter_tallies',
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('verified_count', sa.Integer(), nullable=False),
    sa.CheckConstraint('verified_count >= 0', name=op.f('ck_letter_tallies_not_negative')),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_letter_tallies_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('letter_id', name=op.f('pk_letter_tallies'))
    )
    op.create_table('signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'verified', 'withdrawn', 'removed', name='signature_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('display', sa.Enum('public', 'anonymous', name='signature_display', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('affiliation', sa.String(length=200), nullable=False),
    sa.Column('location', sa.String(length=120), nullable=False),
    sa.Column('comment', sa.String(length=1000), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('email_domain', sa.String(length=253), nullable=False),
    sa.Column('contact_ok', sa.Boolean(), nullable=False),
    sa.Column('emails_sent', sa.Integer(), nullable=False),
    sa.Column('link_sent_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('verified_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_signatures_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signatures')),
    sa.UniqueConstraint('public_id', name=op.f('uq_signatures_public_id'))
    )
    op.create_index('ix_signatures_pending_expiry', 'signatures', ['status', 'link_sent_at'], unique=False)
    op.create_index('ix_signatures_public_list', 'signatures', ['letter_id', 'status', 'display', 'id'], unique=False)
    op.create_index('uq_signatures_letter_id_email_hash', 'signatures', ['letter_id', 'email_hash'], unique=True)
    op.create_table('outbox_emails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('text_body', sa.Text(), nullable=False),
    sa.Column('html_body', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=False),
    sa.Column('signature_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'sending', 'sent', 'failed', name='outbox_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['signature_id'], ['signatures.id'], name=op.f('fk_outbox_emails_signature_id_signatures'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_emails'))
    )
    op.create_index('ix_outbox_emails_due', 'outbox_emails', ['status', 'next_attempt_at'], unique=False)
    op.create_index(op.f('ix_outbox_emails_signature_id'), 'outbox_emails', ['signature_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_outbox_emails_signature_id'), table_name='outbox_emails')
    op.drop_index('ix_outbox_emails_due', table_name='outbox_emails')
    op.drop_table('outbox_emails')
    op.drop_index('uq_signatures_letter_id_email_hash', table_name='signatures')
    op.drop_index('ix_signatures_public_list', table_name='signatures')
    op.drop_index('ix_signatures_pending_expiry', table_name='signatures')
    op.drop_table('signatures')
    op.drop_table('letter_tallies')
    op.drop_table('letters')
