"""Idempotent create: a client-chosen key per owner returns the same job on retry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(255)))
        batch.add_column(sa.Column("request_hash", sa.String(64)))
        batch.create_index("ux_jobs_owner_idempotency_key", ["owner", "idempotency_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ux_jobs_owner_idempotency_key")
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
