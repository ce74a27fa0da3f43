"""fleet: clone detection, re-key tokens, uninstall code

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recent_instances", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("clone_detected_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rekeyed_from", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cert_ca", sa.String(length=16), nullable=True))
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rekey_of", sa.String(length=32), nullable=True))
    op.create_table(
        "fleet_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("fleet_settings")
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.drop_column("rekey_of")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("cert_ca")
        batch_op.drop_column("removed_at")
        batch_op.drop_column("rekeyed_from")
        batch_op.drop_column("clone_detected_at")
        batch_op.drop_column("recent_instances")
