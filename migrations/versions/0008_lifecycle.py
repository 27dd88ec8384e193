"""Job lifecycle for a shared service (issue 13): deadlines, priorities, result retention.

- `deadline_at`: a queued job past it ends `expired` without running; a running one stops at its
  next checkpoint (canceled, reason `deadline`). Null: no deadline.
- `priority`: 0 low, 1 normal, 2 high; claims take higher first. Rows from before count as normal.
- `result_expired_at`: when retention (JANUS_RESULT_TTL) deleted the job's stored files; the API
  shows `expired_result: true` from then on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("result_expired_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_expired_at")
        batch.drop_column("priority")
        batch.drop_column("deadline_at")
