"""encrypt alert content at rest

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 06:00:00

Content columns become binary and every existing value is sealed with the collector's current content key (see
collector/protect). The key must be loaded before the upgrade when rows exist; an empty database needs none.
"""

import sqlalchemy as sa
from alembic import op

from collector.protect.keys import lasting_keyring
from collector.protect.rows import SEALED_COLUMNS, plain_to_sealed, sealed_to_plain, transform_column

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# column -> its type before this revision
OLD_TYPES = {
    ("alerts", "matched"): sa.Text(), ("alerts", "context"): sa.Text(), ("alerts", "window_title"): sa.Text(),
    ("alerts", "application"): sa.String(length=255), ("alerts", "details"): sa.JSON(),
    ("reviews", "reason"): sa.Text(),
}


def _has_rows(bind) -> bool:
    return any(bind.execute(sa.text(f"SELECT 1 FROM {t} LIMIT 1")).first() for t in ("alerts", "reviews"))


def _retype(bind, to_binary: bool) -> None:
    if bind.dialect.name == "postgresql":
        for (table, col), old in OLD_TYPES.items():
            if to_binary:
                source = f"{col}::text" if isinstance(old, sa.JSON) else col
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {col} TYPE bytea USING convert_to({source}, 'UTF8')")
            else:
                target = old.compile(dialect=bind.dialect)
                value = f"convert_from({col}, 'UTF8')"
                if isinstance(old, sa.JSON):
                    value = f"coalesce(nullif({value}, ''), '{{}}')::json"
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {col} TYPE {target} USING {value}")
        return
    # SQLite rebuilds the table; existing rows point at alerts, so their checks wait for the end of the transaction.
    op.execute("PRAGMA defer_foreign_keys = ON")
    # Zero the pages the old plain rows leave behind, or a copied file would still hold them.
    op.execute("PRAGMA secure_delete = ON")
    for table in ("alerts", "reviews"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for (t, col), old in OLD_TYPES.items():
                if t == table:
                    new, existing = (sa.LargeBinary(), old) if to_binary else (old, sa.LargeBinary())
                    batch_op.alter_column(col, type_=new, existing_type=existing, existing_nullable=False)


def upgrade() -> None:
    bind = op.get_bind()
    _retype(bind, to_binary=True)
    if not _has_rows(bind):
        return
    ring = lasting_keyring()
    for sealed in SEALED_COLUMNS:
        transform_column(bind, sealed, plain_to_sealed(ring, sealed))


def downgrade() -> None:
    bind = op.get_bind()
    if _has_rows(bind):
        ring = lasting_keyring()
        for sealed in SEALED_COLUMNS:
            transform_column(bind, sealed, sealed_to_plain(ring, sealed))
    _retype(bind, to_binary=False)
    if bind.dialect.name == "sqlite":
        # The plain values went back as blobs; JSON wants text that parses, and an empty value was an empty dict.
        op.execute("UPDATE alerts SET details = CASE WHEN length(details) = 0 THEN '{}' "
                   "ELSE CAST(details AS TEXT) END")
