"""Retry: a job may point at the job it retries, and records whether its seed was the service's
choice (a retry draws a new one) or the client's (a retry keeps it).

Rows from before this migration count as client-chosen seeds: their retries reproduce them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("retry_of", sa.String(32), nullable=True))
        batch.add_column(sa.Column("random_seed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("random_seed")
        batch.drop_column("retry_of")
