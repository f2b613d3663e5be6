"""Sentence embeddings as a scikit-learn step: the packaged MiniLM model, offline, with a
per-process cache of the texts it encoded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlfactory.training import embeddings
from mlfactory.training.embeddings import DIMENSIONS, SentenceEmbedder, embeddings_available


@pytest.fixture(scope="module")
def papers(datasets_dir) -> pd.DataFrame:
    if not embeddings_available():
        pytest.fail("the embeddings extra is not installed (make install installs it)")
    frame = pd.read_csv(datasets_dir / "arxiv" / "arxiv_data.csv", nrows=12)
    return frame.rename(columns={"titles": "title", "summaries": "abstract"})


def test_vectors_are_normalised_and_repeated_texts_agree(papers: pd.DataFrame) -> None:
    embedder = SentenceEmbedder(("title", "abstract"), max_tokens=64)
    doubled = pd.concat([papers, papers.iloc[:3]], ignore_index=True)
    vectors = embedder.transform(doubled)
    assert vectors.shape == (len(papers) + 3, DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[-3:], vectors[:3])
    assert not np.allclose(vectors[0], vectors[1])  # different papers, different vectors
    assert embedder.transform(papers.iloc[:0]).shape == (0, DIMENSIONS)


def test_a_full_cache_is_emptied_without_losing_the_texts_at_hand(
    papers: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = SentenceEmbedder(("title", "abstract"), max_tokens=32)
    first = embedder.transform(papers.iloc[:6])
    monkeypatch.setattr(embeddings, "CACHE_TEXTS", 8)
    # Half cached, half new: the new ones overflow the cache, which is emptied.
    mixed = embedder.transform(papers.iloc[3:12])
    assert np.allclose(mixed[:3], first[3:6], atol=1e-6)
    assert len(embeddings._encoded(32)) == 6  # only the new texts, after the clear
