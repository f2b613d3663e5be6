"""A local, extractive summary: the most central sentences of the abstract, word for word.

Used when no chat API key is configured. It translates nothing: the summary is in the abstract's
own language. Each sentence is a TF-IDF vector (the vocabulary and weights learnt from the
abstract's sentences and the title); a sentence's centrality is its summed cosine similarity to
the other sentences plus its similarity to the title (degree centrality, as in LexRank). The most
central sentences are kept, within a word budget, in their original order. It is deterministic:
ties go to the earlier sentence.

English stop words are removed, since arXiv abstracts are in English; in another language they
simply do not match and every word counts.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

EXTRACTIVE_VERSION = "1"
MAX_SENTENCES = 3
MAX_WORDS = 120

# A sentence ends at . ! or ? followed by a space and something that is not a lower-case letter,
# so "e.g. the" and "i.e., a" do not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z])")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, whitespace normalised."""
    flat = " ".join(text.split())
    return [sentence for sentence in _SENTENCE_END.split(flat) if sentence]


def extractive_summary(
    title: str, text: str, *, max_sentences: int = MAX_SENTENCES, max_words: int = MAX_WORDS
) -> str:
    """The most central sentences of ``text`` (at least one, at most ``max_sentences``, and no
    more than ``max_words`` words unless the first one alone is longer), in text order."""
    sentences = split_sentences(text)
    if not sentences:
        raise ValueError("nothing to summarise: the text is empty")
    chosen: list[int] = []
    words = 0
    for index in _by_centrality(title, sentences):
        length = len(sentences[index].split())
        if chosen and words + length > max_words:
            continue
        chosen.append(index)
        words += length
        if len(chosen) == max_sentences:
            break
    return " ".join(sentences[index] for index in sorted(chosen))


def _by_centrality(title: str, sentences: list[str]) -> list[int]:
    """Indexes of ``sentences``, most central first (earlier first among equals)."""
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    try:
        vectors = vectorizer.fit_transform([*sentences, title])
    except ValueError:  # no word survives (only stop words or symbols): keep the text order
        return list(range(len(sentences)))
    similarity = cosine_similarity(vectors[:-1], vectors)
    np.fill_diagonal(similarity[:, :-1], 0.0)
    centrality = similarity.sum(axis=1)
    return sorted(range(len(sentences)), key=lambda index: (-centrality[index], index))
