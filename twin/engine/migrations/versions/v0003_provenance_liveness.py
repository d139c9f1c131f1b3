"""What a run actually used, and whether its worker is still alive.

Provenance: ``city_path`` (the city folder the run used), ``city_files_hash`` (a hash
of that folder's net, detectors and plans recomputed when the run was recorded, so a
net edited by hand is recorded as what it is) and ``code_commit`` (the git commit of
the code, when it runs from a git checkout). Liveness: ``worker_host`` and
``worker_pid`` (the process running it) and ``heartbeat_at`` (its last sign of life),
from which a store that opens finds runs left ``running`` by a dead worker. Earlier
runs get NULL everywhere: nothing was recorded about them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("city_path", sa.String(1024), nullable=True))
    op.add_column("runs", sa.Column("city_files_hash", sa.String(128), nullable=True))
    op.add_column("runs", sa.Column("code_commit", sa.String(64), nullable=True))
    op.add_column("runs", sa.Column("worker_host", sa.String(255), nullable=True))
    op.add_column("runs", sa.Column("worker_pid", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite: recreates the table
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker_pid")
        batch.drop_column("worker_host")
        batch.drop_column("code_commit")
        batch.drop_column("city_files_hash")
        batch.drop_column("city_path")
