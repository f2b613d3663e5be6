"""Text classification: HTML-free TF-IDF word and character n-grams and a linear model."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def clean_text(value: str | None) -> str:
    """Lower-cased text with HTML tags removed, entities decoded and whitespace collapsed."""
    if not value:
        return ""
    text = html.unescape(_TAG.sub(" ", value))
    return _SPACE.sub(" ", text).strip().lower()


def text_classifier(columns: Sequence[str], *, c: float = 10.0, seed: int = 42) -> Pipeline:
    """Word (1-2) and character (2-5, within words) TF-IDF per text column, then a logistic
    regression; an empty text is fine, a missing one must be given as ""."""
    return Pipeline(
        [
            ("features", ColumnTransformer(tfidf_vectorizers(columns))),
            ("classifier", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
        ]
    )


def tfidf_vectorizers(columns: Sequence[str]) -> list[tuple[str, TfidfVectorizer, str]]:
    """Word (1-2) and character (2-5, within words) TF-IDF of each text column, as the parts
    of a ColumnTransformer."""
    vectorizers = []
    for column in columns:
        vectorizers += [
            (f"{column}_words", _tfidf(analyzer="word", ngram_range=(1, 2)), column),
            (f"{column}_chars", _tfidf(analyzer="char_wb", ngram_range=(2, 5)), column),
        ]
    return vectorizers


def _tfidf(**options: object) -> TfidfVectorizer:
    return TfidfVectorizer(
        preprocessor=clean_text, sublinear_tf=True, min_df=1, max_features=50_000, **options
    )
