"""Each submission is its own pending signature; hashes keyed per letter; list positions;
indexed search.

- `pending_signatures`: one row per submission of the sign form, with its own link.
  Existing pending rows of `signatures` move there (their links keep working).
- `signatures` keeps confirmed signers only: no public_id, comment, emails_sent,
  link_sent_at or created_at; a `position` per letter orders the public list (the
  cursor is no longer a row id); anonymous rows lose every identity field.
- `email_hash` becomes HMAC(k2, letter, old hash): re-keyed here from the stored hash,
  without any address, which needs SECRET_KEY (`undersigned db upgrade` passes it).
- Search: pg_trgm GIN indexes on PostgreSQL; on SQLite an FTS5 trigram table kept in
  step by triggers. A later migration that rebuilds `signatures` on SQLite (batch mode)
  drops those triggers and must create them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:30:00
"""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import context, op

import app.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The default VERIFY_MAX_AGE_DAYS: how long a moved pending row is kept after its link.
LINK_MAX_AGE = timedelta(days=7)

OLD_STATUSES = ('pending', 'verified', 'withdrawn', 'removed')
NEW_STATUSES = ('verified', 'withdrawn', 'removed')

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE signatures_search USING fts5(name, organization, "
    "content='signatures', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER signatures_search_insert AFTER INSERT ON signatures BEGIN "
    "INSERT INTO signatures_search(rowid, name, organization) "
    "VALUES (new.id, new.name, new.organization); END",
    "CREATE TRIGGER signatures_search_delete AFTER DELETE ON signatures BEGIN "
    "INSERT INTO signatures_search(signatures_search, rowid, name, organization) "
    "VALUES ('delete', old.id, old.name, old.organization); END",
    "CREATE TRIGGER signatures_search_update AFTER UPDATE OF name, organization "
    "ON signatures BEGIN "
    "INSERT INTO signatures_search(signatures_search, rowid, name, organization) "
    "VALUES ('delete', old.id, old.name, old.organization); "
    "INSERT INTO signatures_search(rowid, name, organization) "
    "VALUES (new.id, new.name, new.organization); END",
    "INSERT INTO signatures_search(signatures_search) VALUES ('rebuild')",
]


def _rekey(secret: str, letter_id: int, old_hash: str) -> str:
    """The same as app.signatures.addresses.email_hash, from the stored v1 hash (which is
    its inner HMAC). Written out here so that this migration never changes."""
    key = hmac.new(secret.encode(), b"undersigned/email-hash/per-letter/v2", hashlib.sha256)
    return hmac.new(key.digest(), f"{letter_id}:{old_hash}".encode(), hashlib.sha256).hexdigest()


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{status}'" for status in statuses) + ")"


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table('pending_signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('waiting', 'sent', 'skipped', 'confirmed', name='pending_state', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('display', sa.Enum('public', 'anonymous', name='signature_display', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('organization', sa.String(length=200), nullable=False),
    sa.Column('city', sa.String(length=120), nullable=False),
    sa.Column('contact_ok', sa.Boolean(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('email_domain', sa.String(length=253), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('notified_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letters.id'], name=op.f('fk_pending_signatures_letter_id_letters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_signatures')),
    sa.UniqueConstraint('public_id', name=op.f('uq_pending_signatures_public_id'))
    )
    op.create_index('ix_pending_signatures_address', 'pending_signatures', ['letter_id', 'email_hash'], unique=False)
    op.create_index('ix_pending_signatures_due', 'pending_signatures', ['state', 'due_at'], unique=False)
    op.create_index('ix_pending_signatures_expires_at', 'pending_signatures', ['expires_at'], unique=False)

    with op.batch_alter_table('letter_tallies') as batch:
        batch.add_column(sa.Column('last_position', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('letter_tallies') as batch:
        batch.alter_column('last_position', server_default=None)
    with op.batch_alter_table('signatures') as batch:
        batch.add_column(sa.Column('position', sa.Integer(), nullable=True))

    _move_data(bind)

    with op.batch_alter_table('signatures') as batch:
        batch.drop_index('ix_signatures_public_list')
        batch.drop_index('ix_signatures_pending_expiry')
        batch.drop_constraint(op.f('uq_signatures_public_id'), type_='unique')
        batch.drop_constraint(op.f('ck_signatures_signature_status'), type_='check')
        for column in ('public_id', 'comment', 'emails_sent', 'link_sent_at', 'created_at'):
            batch.drop_column(column)
        batch.alter_column('verified_at', existing_type=app.db.UTCDateTime(timezone=True), nullable=False)
        batch.create_check_constraint('signature_status', _status_check(NEW_STATUSES))
        batch.create_index('uq_signatures_letter_id_position', ['letter_id', 'position'], unique=True)

    if bind.dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.create_index('ix_signatures_name_trgm', 'signatures', ['name'], postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
        op.create_index('ix_signatures_organization_trgm', 'signatures', ['organization'], postgresql_using='gin', postgresql_ops={'organization': 'gin_trgm_ops'})
    else:
        for statement in SQLITE_SEARCH:
            op.execute(statement)


def _move_data(bind: sa.Connection) -> None:
    meta = sa.MetaData()
    signatures = sa.Table('signatures', meta, autoload_with=bind)
    pending = sa.Table('pending_signatures', meta, autoload_with=bind)
    tallies = sa.Table('letter_tallies', meta, autoload_with=bind)
    if bind.execute(sa.select(sa.func.count()).select_from(signatures)).scalar_one() == 0:
        return
    secret = context.config.attributes.get('secret_key')
    if not secret:
        raise RuntimeError(
            'Migration 0004 re-keys the stored email hashes and needs SECRET_KEY: run it with '
            '`undersigned db upgrade` (or `serve`), which passes it.'
        )
    utc = app.db.UTCDateTime(timezone=True)
    rows = bind.execute(sa.select(signatures).order_by(signatures.c.id)).mappings().all()
    for row in rows:
        new_hash = _rekey(secret, row['letter_id'], row['email_hash'])
        if row['status'] == 'pending':
            sent_at = utc.process_result_value(row['link_sent_at'], bind.dialect)
            created = utc.process_result_value(row['created_at'], bind.dialect)
            bind.execute(pending.insert().values(
                public_id=row['public_id'], letter_id=row['letter_id'], state='sent',
                display=row['display'], name=row['name'], title=row['title'],
                organization=row['organization'], city=row['city'],
                contact_ok=row['contact_ok'], email=row['email'], email_hash=new_hash,
                email_domain=row['email_domain'],
                created_at=utc.process_bind_param(created, bind.dialect),
                due_at=utc.process_bind_param(created, bind.dialect),
                notified_at=utc.process_bind_param(sent_at, bind.dialect),
                expires_at=utc.process_bind_param(sent_at + LINK_MAX_AGE, bind.dialect),
            ))
            bind.execute(signatures.delete().where(signatures.c.id == row['id']))
            continue
        values = {'email_hash': new_hash, 'verified_at': row['verified_at'] or row['created_at']}
        if row['display'] == 'anonymous':
            values.update(name='', title='', organization='', city='', email=None,
                          email_domain='', contact_ok=False)
        elif not row['contact_ok']:
            values['email'] = None
        bind.execute(signatures.update().where(signatures.c.id == row['id']).values(**values))
    # Positions in order of confirmation, per letter.
    positions: dict[int, int] = {}
    for signature_id, letter_id in bind.execute(
        sa.select(signatures.c.id, signatures.c.letter_id)
        .order_by(signatures.c.letter_id, signatures.c.verified_at, signatures.c.id)
    ):
        positions[letter_id] = positions.get(letter_id, 0) + 1
        bind.execute(signatures.update().where(signatures.c.id == signature_id)
                     .values(position=positions[letter_id]))
    for letter_id, last in positions.items():
        bind.execute(tallies.update().where(tallies.c.letter_id == letter_id)
                     .values(last_position=last))


def downgrade() -> None:
    bind = op.get_bind()
    meta = sa.MetaData()
    for name in ('signatures', 'pending_signatures'):
        table = sa.Table(name, meta, autoload_with=bind)
        if bind.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
            raise RuntimeError(
                'Downgrading past 0004 cannot restore the old email hashes or the pending '
                'rows: restore the backup taken before the upgrade instead.'
            )
    if bind.dialect.name == 'postgresql':
        op.drop_index('ix_signatures_organization_trgm', table_name='signatures')
        op.drop_index('ix_signatures_name_trgm', table_name='signatures')
    else:
        for trigger in ('insert', 'delete', 'update'):
            op.execute(f'DROP TRIGGER signatures_search_{trigger}')
        op.execute('DROP TABLE signatures_search')
    with op.batch_alter_table('signatures') as batch:
        batch.drop_index('uq_signatures_letter_id_position')
        batch.drop_constraint(op.f('ck_signatures_signature_status'), type_='check')
        batch.create_check_constraint('signature_status', _status_check(OLD_STATUSES))
        batch.alter_column('verified_at', existing_type=app.db.UTCDateTime(timezone=True), nullable=True)
        batch.add_column(sa.Column('public_id', sa.String(length=32), nullable=False))
        batch.add_column(sa.Column('comment', sa.String(length=1000), nullable=False))
        batch.add_column(sa.Column('emails_sent', sa.Integer(), nullable=False))
        batch.add_column(sa.Column('link_sent_at', app.db.UTCDateTime(timezone=True), nullable=False))
        batch.add_column(sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False))
        batch.create_unique_constraint(op.f('uq_signatures_public_id'), ['public_id'])
        batch.create_index('ix_signatures_public_list', ['letter_id', 'status', 'display', 'id'], unique=False)
        batch.create_index('ix_signatures_pending_expiry', ['status', 'link_sent_at'], unique=False)
        batch.drop_column('position')
    with op.batch_alter_table('letter_tallies') as batch:
        batch.drop_column('last_position')
    op.drop_index('ix_pending_signatures_expires_at', table_name='pending_signatures')
    op.drop_index('ix_pending_signatures_due', table_name='pending_signatures')
    op.drop_index('ix_pending_signatures_address', table_name='pending_signatures')
    op.drop_table('pending_signatures')
