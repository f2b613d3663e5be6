"""``products``: the product type of a Rakuten France catalogue entry, from its title and text.

The ``text_classification`` template (see the declaration in ``datasets/builtin.yaml``) plus
steps of its own that load the catalogue as it arrives: check_state -> load (the next
increment: 40 %, then +3 % a week up to 100 %) -> validate_load; then the template's drift,
snapshot (fixed evaluation set, class-balanced training set), train (TF-IDF word and character
n-grams on designation + description, logistic regression), evaluate (weighted and macro F1 on
the fixed set), promote, predict and summary. Every Monday at 00:00.

The catalogue texts available here are the first 499 products of the challenge (the full label
file has 84,916 rows): enough to exercise every step, far too few for the challenge's scores.

Heavy libraries are imported inside the steps: Airflow imports this module when it parses DAGs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from mlfactory.datasets.declarations import PipelineDeclaration
from mlfactory.datasets.project import Declarations
from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.pipelines.templates import LOAD, TemplateParams
from mlfactory.pipelines.templates import build as build_template

if TYPE_CHECKING:
    import pandas as pd

DATASET = "products"
# Descriptions the source repository's author typed into rows 0, 1 and 3 as test text; the
# challenge's own file has them empty (see the data set's SOURCE.md).
PLACEHOLDER_DESCRIPTIONS = frozenset(
    {"nc", "Ici du texte de test en français", "Here some test English text"}
)


class ProductsParams(TemplateParams):
    first_percentage: float = Field(
        40.0, gt=0, le=100, description="Share loaded by the first run."
    )
    step_percentage: float = Field(3.0, gt=0, le=100, description="Share added by each later run.")


def build(declaration: PipelineDeclaration, declarations: Declarations) -> Pipeline:
    """The text template, loading the catalogue by weekly increments."""
    return build_template(
        declaration,
        declarations,
        ingest=(
            Step("check_state", check_state),
            Step(LOAD, load, needs=("check_state",)),
            Step("validate_load", validate_load, needs=(LOAD,)),
        ),
        prepare=blank_placeholders,
        params=ProductsParams,
    )


def blank_placeholders(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input with the placeholder descriptions as empty text."""
    if "description" in frame:
        frame.loc[frame["description"].isin(PLACEHOLDER_DESCRIPTIONS), "description"] = ""
    return frame


def _params(ctx: Context) -> ProductsParams:
    assert isinstance(ctx.params, ProductsParams)
    return ctx.params


def check_state(ctx: Context) -> dict[str, Any]:
    """How much of the catalogue is loaded, and which share the next increment brings."""
    from mlfactory.ingest.fractions import next_percentage
    from mlfactory.ingest.state import dataset_status, load_history

    params = _params(ctx)
    completed = [b for b in load_history(ctx.sessions, DATASET) if b["status"] == "completed"]
    current = None
    if completed:
        current = completed[-1]["percentage"] if completed[-1]["mode"] == "fraction" else 100.0
    upcoming = next_percentage(
        current, first=params.first_percentage, step=params.step_percentage, last=100.0
    )
    return {
        "items": dataset_status(ctx.sessions, DATASET)["items"],
        "loads": len(completed),
        "current_percentage": current,
        "next_percentage": upcoming,
    }


def load(ctx: Context) -> dict[str, Any]:
    """Load the next increment as one batch (``initial``, then ``week_N``); at 100 % say so."""
    from mlfactory.datasets.project import get_dataset
    from mlfactory.ingest.declared import check_columns_unchanged, declared_meta, read_declared
    from mlfactory.ingest.loader import Record, load_batch

    state = ctx.output_of("check_state")
    percentage = state["next_percentage"]
    if percentage is None:
        ctx.log.info("the whole catalogue is loaded (100 %%): nothing new to load")
        return {
            "loaded": False,
            "percentage": 100.0,
            "message": "all data loaded (100 %)",
            "dataset": DATASET,
        }
    declared = get_dataset(ctx.settings, DATASET)
    check_columns_unchanged(ctx.sessions, declared, DATASET)
    records, origin = read_declared(ctx.settings, declared)
    rows = list(records)
    result = load_batch(
        ctx.sessions,
        DATASET,
        rows,
        mode="fraction",
        percentage=percentage,
        seed=_params(ctx).seed,
        name="initial" if state["loads"] == 0 else f"week_{state['loads']}",
        source=origin,
        run_id=ctx.run_id,
        write=declared.mode,
        meta=declared_meta(declared),
    )
    keyed = sum(isinstance(row, Record) for row in rows)
    return {
        **result.as_dict(),
        "dataset": DATASET,
        "loaded": True,
        "source_keys": keyed,
        "source_bad_rows": len(rows) - keyed,
    }


def validate_load(ctx: Context) -> dict[str, Any]:
    """The batch's counts add up and the store holds exactly the share it should."""
    from mlfactory.ingest.fractions import fraction_size
    from mlfactory.ingest.state import dataset_status, load_history

    loaded = ctx.output_of("load")
    if not loaded["loaded"]:
        return {"checked": False, "reason": loaded["message"]}
    batch = next(b for b in load_history(ctx.sessions, DATASET) if b["id"] == loaded["batch_id"])
    parts = sum(batch[f"rows_{n}"] for n in ("inserted", "updated", "unchanged", "rejected"))
    # Unreadable source rows have no key: every batch sees and rejects them again.
    expected = (
        fraction_size(loaded["source_keys"], loaded["percentage"]) + loaded["source_bad_rows"]
    )
    items = dataset_status(ctx.sessions, DATASET)["items"]
    problems = []
    if batch["rows_seen"] != parts:
        problems.append(
            f"rows seen {batch['rows_seen']} != inserted+updated+unchanged+rejected {parts}"
        )
    if batch["rows_seen"] != expected:
        problems.append(
            f"rows seen {batch['rows_seen']} != {expected} ({loaded['percentage']:g} %)"
        )
    if items != batch["rows_seen"] - batch["rows_rejected"]:
        problems.append(
            f"store holds {items} items, expected {batch['rows_seen'] - batch['rows_rejected']}"
        )
    if batch["percentage"] != loaded["percentage"]:
        problems.append(f"batch records {batch['percentage']} %, expected {loaded['percentage']} %")
    if problems:
        raise ValueError("load check failed: " + "; ".join(problems))
    return {"checked": True, "items": items, "expected_rows": expected}
