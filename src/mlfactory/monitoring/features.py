"""Columns to watch that are not raw inputs: text lengths, embedding projections, labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA

from mlfactory.monitoring.errors import DriftInputError


def text_length_features(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``<column>_chars`` and ``<column>_words`` for each text column (missing text stays
    missing), on the frame's index."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DriftInputError(f"text columns missing from the data: {missing}")
    features: dict[str, pd.Series] = {}
    for column in columns:
        text = frame[column].astype("string")
        features[f"{column}_chars"] = text.str.len()
        features[f"{column}_words"] = text.str.split().str.len()
    return pd.DataFrame(features, index=frame.index)


def embedding_projection(
    reference: ArrayLike,
    current: ArrayLike,
    *,
    components: int = 5,
    fit_share: float = 0.5,
    seed: int = 0,
    prefix: str = "embedding_pc",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sets of embeddings projected on the first principal components of the reference.

    The axes are fitted on a random ``fit_share`` of the reference rows (seeded), and the
    reference side of the comparison is made of the *other* reference rows. Rows that helped
    fit the axes spread wider along them than any new row does (the top components chase their
    noise, markedly when rows are few next to the width), so comparing them with current rows
    would report drift between two halves of the same data.

    Returns one frame per side with columns ``<prefix>1`` .. ``<prefix><components>`` (on a
    fresh 0..n-1 index; the reference frame has the held-out rows only): numeric columns to
    test and to group, e.g. as ``"embedding"``.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    for name, matrix in (("reference", ref), ("current", cur)):
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise DriftInputError(
                f"{name} embeddings must be a non-empty 2-D array, got shape {matrix.shape}"
            )
    if ref.shape[1] != cur.shape[1]:
        raise DriftInputError(
            f"embeddings differ in width: reference {ref.shape[1]}, current {cur.shape[1]}"
        )
    if not 0 < fit_share < 1:
        raise DriftInputError(f"fit_share must be in (0, 1), got {fit_share}")
    order = np.random.default_rng(seed).permutation(len(ref))
    fit_rows = round(len(ref) * fit_share)
    fit, held_out = ref[order[:fit_rows]], ref[order[fit_rows:]]
    if not 1 <= components <= min(fit.shape) or len(held_out) == 0:
        raise DriftInputError(
            f"{len(ref)} reference rows of width {ref.shape[1]} cannot give {components} "
            f"components fitted on {fit_share:.0%} of the rows and the rest to compare"
        )
    pca = PCA(n_components=components, random_state=seed).fit(fit)
    names = [f"{prefix}{index}" for index in range(1, components + 1)]
    return (
        pd.DataFrame(pca.transform(held_out), columns=names),
        pd.DataFrame(pca.transform(cur), columns=names),
    )


def label_column(labels: Iterable[Any], name: str = "predicted_label") -> pd.Series:
    """Predicted labels as a categorical column, so that their mix is compared value by value
    (label ids would otherwise be tested as numbers)."""
    return pd.Series(list(labels), name=name, dtype="string").astype("category")
