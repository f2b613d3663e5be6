"""drift reports: one row per drift check of a data set

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("pipeline_runs.id", ondelete="SET NULL")),
        sa.Column("snapshot_id", sa.Integer(), sa.ForeignKey("snapshots.id", ondelete="SET NULL")),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.String(20)),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("dataset_drift", sa.Boolean(), nullable=False),
        sa.Column("report", JSON_TYPE, nullable=False),
        sa.Column("html_path", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_drift_reports_dataset_created", "drift_reports", ["dataset", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_reports_dataset_created", table_name="drift_reports")
    op.drop_table("drift_reports")
