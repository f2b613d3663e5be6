"""What the arXiv pipelines share: the data set, the registered model and the model's input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

DATASET = "arxiv"
MODEL_NAME = "arxiv"
TEXT_COLUMNS = ("title", "abstract")


def article_features(
    records: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Sequence[str] = TEXT_COLUMNS
) -> pd.DataFrame:
    """The classifier's input from stored article data: title and abstract, missing as "".
    (``columns`` are the model's, which are those two.)"""
    import pandas as pd

    frame = pd.DataFrame(records).reindex(columns=list(TEXT_COLUMNS))
    return frame.fillna("").astype(str)
