"""PostgreSQL: a job's insert, its tenant's lock and the count of its unfinished jobs in one
round trip (jobs/limits.py, `insert_within_cap`).

The API inserted each new job in a transaction of five round trips (BEGIN, INSERT, advisory
lock, count, COMMIT), most of a submit's cost in the API process. This function does the same
in one statement, run in autocommit: it takes the tenant's transaction-scoped advisory lock,
counts the tenant's unfinished jobs (a statement of its own inside a function, so its snapshot
is taken after the lock and sees every job committed before), and inserts the row only when the
count is under the cap. It returns whether it inserted.

The row comes as JSON and is read with jsonb_populate_record into the jobs row type, so a
column added later needs no change here (the caller sends every column, see `row_json`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CREATE = """
CREATE OR REPLACE FUNCTION janusq_insert_job(job jsonb, cap integer, unfinished text[])
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF cap > 0 THEN
    PERFORM pg_advisory_xact_lock(hashtext('janusq:unfinished:' || (job->>'owner')));
    IF (SELECT count(*) FROM jobs WHERE owner = job->>'owner' AND status = ANY(unfinished)) >= cap THEN
      RETURN false;
    END IF;
  END IF;
  INSERT INTO jobs SELECT * FROM jsonb_populate_record(NULL::jobs, job);
  RETURN true;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS janusq_insert_job(jsonb, integer, text[])")
