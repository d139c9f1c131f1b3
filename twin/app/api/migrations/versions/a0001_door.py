"""The door's tables: tenants with quotas, API keys, the API's runs, session usage,
the audit log.

Revision ID: a0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tenants",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("concurrent_runs", sa.Integer(), nullable=False),
        sa.Column("concurrent_sessions", sa.Integer(), nullable=False),
        sa.Column("vehicle_s_per_day", sa.Float(), nullable=False),
        sa.Column("max_city_signals", sa.Integer(), nullable=False),
        sa.Column("max_session_s", sa.Float(), nullable=False),
        sa.Column("requests_per_min", sa.Integer(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("api_tenants.name"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaced_by", sa.String(32), nullable=True),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    op.create_table(
        "api_runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("estimate_vehicle_s", sa.Float(), nullable=False),
        sa.Column("charged_vehicle_s", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("progress_done_s", sa.Float(), nullable=True),
        sa.Column("progress_total_s", sa.Float(), nullable=True),
    )
    for column in ("tenant", "state", "submitted_at", "day"):
        op.create_index(f"ix_api_runs_{column}", "api_runs", [column])
    op.create_table(
        "api_session_usage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vehicle_s", sa.Float(), nullable=False),
    )
    op.create_index("ix_api_session_usage_tenant", "api_session_usage", ["tenant"])
    op.create_index("ix_api_session_usage_day", "api_session_usage", ["day"])
    op.create_table(
        "api_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_api_audit_at", "api_audit", ["at"])
    op.create_index("ix_api_audit_tenant", "api_audit", ["tenant"])


def downgrade() -> None:
    op.drop_table("api_audit")
    op.drop_table("api_session_usage")
    op.drop_table("api_runs")
    op.drop_table("api_keys")
    op.drop_table("api_tenants")
