"""deleted items, and a data set's items in id order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 00:30:00.000000

``items.deleted_batch_id`` names the batch that deleted an item (a replace load whose source no
longer has its key): the row stays, so its history (and snapshots as of earlier batches) stay
whole. ``data_loads.rows_deleted`` counts them. The views count live items only.
``ix_items_dataset_id`` serves work selection, which pages a data set's items in id order: without
it SQLite reads every item of the data set and sorts them for each batch.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LAST_BATCH = """(SELECT MAX(d.id) FROM data_loads d
                 WHERE d.dataset = i.dataset AND d.status = 'completed') AS last_batch_id"""


def _views(live: str) -> dict[str, str]:
    return {
        "current_data_state": f"""
            SELECT i.dataset AS dataset,
                   COUNT(*) AS items,
                   COUNT(i.label) AS labelled,
                   MAX(i.updated_at) AS last_change,
                   {LAST_BATCH}
              FROM items i
              {live}
             GROUP BY i.dataset
        """,
        "class_distribution": f"""
            SELECT dataset, label, COUNT(*) AS items
              FROM items i
              {live}
             GROUP BY dataset, label
        """,
    }


def _replace_views(live: str) -> None:
    for name, query in _views(live).items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {query}")


def upgrade() -> None:
    for name in _views(""):
        op.execute(f"DROP VIEW IF EXISTS {name}")  # SQLite rebuilds the table below
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("deleted_batch_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_items_deleted_batch_id_data_loads", "data_loads", ["deleted_batch_id"], ["id"]
        )
    with op.batch_alter_table("data_loads") as batch:
        batch.add_column(
            sa.Column("rows_deleted", sa.Integer(), nullable=False, server_default="0")
        )
    _replace_views("WHERE i.deleted_batch_id IS NULL")
    op.create_index("ix_items_dataset_id", "items", ["dataset", "id"])


def downgrade() -> None:
    op.drop_index("ix_items_dataset_id", table_name="items")
    for name in _views(""):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("data_loads") as batch:
        batch.drop_column("rows_deleted")
    with op.batch_alter_table("items") as batch:
        batch.drop_constraint("fk_items_deleted_batch_id_data_loads", type_="foreignkey")
        batch.drop_column("deleted_batch_id")
    _replace_views("")
