"""Queued runs: who asked for a run (``owner``, a tenant) and when it started.

The status ``'queued'`` needs no schema change (``status`` is a plain string column);
``started_at`` of earlier runs is their ``created_at``: a run was recorded when it
started. Downgrading fails queued runs (the old code knows no such status).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("owner", sa.String(200), nullable=True))
    op.create_index("ix_runs_owner", "runs", ["owner"])
    op.execute("UPDATE runs SET started_at = created_at WHERE started_at IS NULL")


def downgrade() -> None:
    op.execute(
        "UPDATE runs SET status = 'failed', finished_at = CURRENT_TIMESTAMP, "
        "error = 'Cancelled: still queued when the run store was downgraded.' "
        "WHERE status = 'queued'"
    )
    op.drop_index("ix_runs_owner", table_name="runs")
    with op.batch_alter_table("runs") as batch:  # SQLite: recreates the table
        batch.drop_column("owner")
        batch.drop_column("started_at")
