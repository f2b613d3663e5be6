"""Logging a training (or evaluation) set to the active MLflow run as a dataset input.

MLflow keeps a digest of at most 36 characters per dataset, and the one it computes itself
(``mlflow.data.from_pandas`` without ``digest``) is 8 hex characters of an md5 over the first
10,000 rows only. A snapshot's own digest is a 64-character sha256, so the dataset input carries
its first 32 characters as MLflow's digest (what the UI shows and what MLflow deduplicates
datasets by, per name and digest) and the whole digest in the input tag ``mlfactory.digest``.
The per-class counts go in input tags too (``class_count.<label>``, ``balanced_count.<label>``)
and, with the digest, in ``datasets/<name>/class_counts.json``; the figure, if any, next to it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import pandas as pd
from matplotlib.figure import Figure

MLFLOW_DIGEST_CHARS = 32  # MLflow refuses digests longer than 36 characters
SCHEMA_ROWS = 1_000
DIGEST_TAG = "mlfactory.digest"
ROWS_TAG = "mlfactory.rows"
CLASS_COUNT_TAG = "class_count."
BALANCED_COUNT_TAG = "balanced_count."


def log_training_data(
    frame: pd.DataFrame,
    *,
    name: str,
    digest: str,
    targets: str,
    class_counts: dict[str, int],
    balanced_counts: dict[str, int] | None,
    figure: Figure | None = None,
    context: str = "training",
    source: str | Path | None = None,
) -> None:
    """Log ``frame`` as a dataset input of the active run (``context`` "training" by default),
    with ``digest`` and the class counts before (and after) balancing.

    ``source`` is where the rows live (the snapshot's parquet file); without it MLflow records
    the code that called this. Raises RuntimeError when no MLflow run is active.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("log_training_data needs an active MLflow run (mlflow.start_run)")
    tags = {DIGEST_TAG: digest, ROWS_TAG: str(len(frame))}
    tags.update({f"{CLASS_COUNT_TAG}{label}": str(n) for label, n in class_counts.items()})
    if balanced_counts is not None:
        tags.update(
            {f"{BALANCED_COUNT_TAG}{label}": str(n) for label, n in balanced_counts.items()}
        )
    with warnings.catch_warnings():
        # A local path matches both local artefact sources MLflow registers (schemes "" and
        # "file", the same class), so MLflow warns about the ambiguity before picking it; and
        # its schema inference hints about integer columns, advice meant for model signatures.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        dataset = mlflow.data.from_pandas(
            frame,
            source=None if source is None else str(source),
            targets=targets,
            name=name,
            digest=digest[:MLFLOW_DIGEST_CHARS],
        )
        # MLflow infers the schema from every value of every row as the input is logged (two
        # seconds for 70,000 rows of text); the first rows of a snapshot tell the same.
        dataset.__dict__["schema"] = mlflow.data.from_pandas(frame.head(SCHEMA_ROWS)).schema
        mlflow.log_input(dataset, context=context, tags=tags)

    report: dict[str, Any] = {
        "name": name,
        "context": context,
        "digest": digest,
        "mlflow_digest": dataset.digest,
        "rows": len(frame),
        "class_counts": class_counts,
        "balanced_counts": balanced_counts,
    }
    mlflow.log_dict(report, f"datasets/{name}/class_counts.json")
    if figure is not None:
        mlflow.log_figure(figure, f"datasets/{name}/class_counts.png")
