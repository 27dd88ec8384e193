"""Job events in the database, for the embedded configuration (SQLite, no Redis): the rows
GET /v1/jobs/<id>/events streams (jobs/events.py). On Redis deployments the events live in
per-job Redis streams and this table stays empty.

Revision ID: 0011
Revises: 0010 (the webhooks outbox; written against 0009, re-pointed once 0010 was on main)
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id", "id"])
    op.create_index("ix_job_events_created_at", "job_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_job_events_created_at", table_name="job_events")
    op.drop_index("ix_job_events_job_id", table_name="job_events")
    op.drop_table("job_events")
