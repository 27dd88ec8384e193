"""Job lifecycle for a shared service (issue 13): deadlines, priorities, result retention.

- `deadline_at`: a queued job past it ends `expired` without running; a running one stops at its
  next checkpoint (canceled, reason `deadline`). Null: no deadline.
- `priority`: 0 low, 1 normal, 2 high; claims take higher first. Rows from before count as normal.
- `ix_jobs_owner_started`, `ix_jobs_queued_claim`: the claim order (priority, then tenants in turn,
  worker/claims.py) stays cheap with thousands of jobs queued.
- `result_expired_at`: when retention (JANUS_RESULT_TTL) deleted the job's stored files; the API
  shows `expired_result: true` from then on. The sweeper finds the finished jobs still to expire,
  oldest first, through a partial index on finished_at (only rows not yet expired are in it).
- `service_secrets`: values every API process must share, e.g. the key of signed image URLs when
  JANUS_URL_SIGNING_KEY is unset (generated once by the first process that needs it).

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
    # Fair share: each queued tenant's last start, found by one index probe (worker/claims.py).
    op.create_index("ix_jobs_owner_started", "jobs", ["owner", "started_at"])
    # The claim order's ranking, read in order from queued rows only.
    queued = sa.text("status = 'queued'")
    op.create_index("ix_jobs_queued_claim", "jobs", ["type", "owner", "priority", "created_at", "id"],
                    postgresql_where=queued, sqlite_where=queued)
    op.create_index("ix_jobs_retention", "jobs", ["finished_at"],
                    postgresql_where=sa.text("result_expired_at IS NULL"),
                    sqlite_where=sa.text("result_expired_at IS NULL"))
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_claim", table_name="jobs")
    op.drop_index("ix_jobs_owner_started", table_name="jobs")
    op.drop_table("service_secrets")
    op.drop_index("ix_jobs_retention", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_expired_at")
        batch.drop_column("priority")
        batch.drop_column("deadline_at")
