"""articles newest first: an index for the order of the article list, on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:32:46.000000

``GET /v1/articles`` pages the items of ``arxiv`` by
``CAST(data ->> 'published' AS VARCHAR) DESC NULLS LAST, id DESC``. This partial index holds
that expression and order for the ``arxiv`` rows, so a page reads its rows from the index
instead of sorting every paper. SQLite gets none: it plans the query with its JSON path and
data set as bound parameters, which no index expression matches. Building the index holds
writes to ``items`` until it is done.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_items_arxiv_published"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        INDEX,
        "items",
        [sa.text("((data ->> 'published')::varchar) DESC NULLS LAST"), sa.text("id DESC")],
        postgresql_where=sa.text("dataset = 'arxiv'"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(INDEX, table_name="items")
