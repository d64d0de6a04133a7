"""The signature log: entries, stored tree hashes, heads and signed checkpoints, and each
signature's receipt commitment.

Every signature already counted gets a commitment to a random secret that nobody is
given (it was confirmed before receipts existed) and one queued `add confirmed` entry,
in order of list position, so that the log's count equals the tally once the sequencer
has run. A removed one gets a commitment only (a restore then logs it back in).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 03:03:22
"""

import hashlib
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('log_checkpoints',
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('root', sa.LargeBinary(length=32), nullable=False),
    sa.Column('adds', sa.BigInteger(), nullable=False),
    sa.Column('removes', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_log_checkpoints_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('letter_id', 'size', name=op.f('pk_log_checkpoints'))
    )
    op.create_table('log_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('event', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('hour', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('commitment', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_log_entries_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_entries'))
    )
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.create_index('ix_log_entries_letter_id_commitment', ['letter_id', 'commitment'], unique=False)
        batch_op.create_index('ix_log_entries_unsequenced', ['letter_id', 'id'], unique=False, postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
        batch_op.create_index('uq_log_entries_letter_id_seq', ['letter_id', 'seq'], unique=True)

    op.create_table('log_hashes',
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_log_hashes_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('letter_id', 'idx', name=op.f('pk_log_hashes'))
    )
    op.create_table('log_heads',
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('adds', sa.BigInteger(), nullable=False),
    sa.Column('removes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_log_heads_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('letter_id', name=op.f('pk_log_heads'))
    )
    for table in ('signatures', 'pending_signatures'):
        op.add_column(table, sa.Column('receipt_commitment', sa.String(length=64), nullable=True))
    _backfill()


BATCH = 5000


def _backfill() -> None:
    """A commitment for every confirmed signature (verified or removed), and an add
    entry for each counted one. Batches of 5,000, by id."""
    bind = op.get_bind()
    signatures = sa.table(
        'signatures',
        sa.column('id', sa.Integer()),
        sa.column('letter_id', sa.Integer()),
        sa.column('position', sa.Integer()),
        sa.column('status', sa.String()),
        sa.column('verified_at', app.db.UTCDateTime(timezone=True)),
        sa.column('receipt_commitment', sa.String()),
    )
    entries = sa.table(
        'log_entries',
        sa.column('letter_id', sa.Integer()),
        sa.column('event', sa.String()),
        sa.column('reason', sa.String()),
        sa.column('hour', app.db.UTCDateTime(timezone=True)),
        sa.column('commitment', sa.String()),
    )
    set_commitment = (
        signatures.update()
        .where(signatures.c.id == sa.bindparam('signature_id'))
        .values(receipt_commitment=sa.bindparam('commitment_value'))
    )
    after = 0
    while True:
        rows = bind.execute(
            sa.select(
                signatures.c.id, signatures.c.letter_id, signatures.c.status,
                signatures.c.verified_at,
            )
            .where(signatures.c.id > after, signatures.c.status.in_(('verified', 'removed')))
            .order_by(signatures.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1].id
        made = [(row, hashlib.sha256(secrets.token_bytes(32)).hexdigest()) for row in rows]
        bind.execute(
            set_commitment,
            [{'signature_id': row.id, 'commitment_value': value} for row, value in made],
        )
    # The adds, per letter in list order (the public list's 1, 2, 3...), each with the
    # hour of its confirmation only.
    letter, position = 0, 0
    while True:
        rows = bind.execute(
            sa.select(
                signatures.c.letter_id, signatures.c.position, signatures.c.verified_at,
                signatures.c.receipt_commitment,
            )
            .where(
                signatures.c.status == 'verified',
                sa.tuple_(signatures.c.letter_id, signatures.c.position)
                > sa.tuple_(sa.literal(letter), sa.literal(position)),
            )
            .order_by(signatures.c.letter_id, signatures.c.position)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        letter, position = rows[-1].letter_id, rows[-1].position
        bind.execute(
            entries.insert(),
            [
                {
                    'letter_id': row.letter_id,
                    'event': 'add',
                    'reason': 'confirmed',
                    'hour': row.verified_at.replace(minute=0, second=0, microsecond=0),
                    'commitment': row.receipt_commitment,
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    for table in ('pending_signatures', 'signatures'):
        op.drop_column(table, 'receipt_commitment')

    op.drop_table('log_heads')
    op.drop_table('log_hashes')
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.drop_index('uq_log_entries_letter_id_seq')
        batch_op.drop_index('ix_log_entries_unsequenced', postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
        batch_op.drop_index('ix_log_entries_letter_id_commitment')

    op.drop_table('log_entries')
    op.drop_table('log_checkpoints')
