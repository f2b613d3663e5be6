"""snapshot kinds and one prediction per item and version

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 16:50:45.593601
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_item_model")
        batch_op.create_index(
            "ux_predictions_item_model", ["item_id", "model_name", "model_version"], unique=True
        )

    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="training")
        )
        batch_op.add_column(sa.Column("seed", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("metadata", JSON_TYPE, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_column("metadata")
        batch_op.drop_column("seed")
        batch_op.drop_column("kind")

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ux_predictions_item_model")
        batch_op.create_index(
            "ix_predictions_item_model", ["item_id", "model_name", "model_version"], unique=False
        )
