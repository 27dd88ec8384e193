"""The index the per-tenant cap counts with (owner, status), in a migration of its own.

It was added to 0003 after 0003 had first been committed, so a database that ran the first 0003
never got it. IF NOT EXISTS: a database that ran the later 0003 has it already.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_status", "jobs", ["owner", "status"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_status", table_name="jobs", if_exists=True)
