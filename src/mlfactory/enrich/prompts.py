"""The prompt of a plain-language summary of a paper, for a non-specialist reader.

``PROMPT_VERSION`` is the ``producer_version`` of the summaries written with it: change it with
the wording, so that summaries can be traced to the prompt that made them.
"""

from __future__ import annotations

PROMPT_VERSION = "1"
MAX_WORDS = 120  # the longest summary asked for, when max_tokens allows it
TOKENS_PER_WORD = 3  # a generous bound (French or German run about 1.5-2 tokens per word)
MAX_INPUT_CHARS = 6_000  # an arXiv abstract is at most 1,920 characters; anything longer is cut

SYSTEM = (
    "You explain research papers to curious readers who are not specialists of the field. "
    "You write plain, accurate prose: no jargon left unexplained, no formulas, no lists, no "
    "title, and nothing the paper does not say."
)
USER = """Summarise this paper for a non-specialist.

Language of the summary: the language whose ISO 639-1 code is "{language}".
Length: {min_sentences} to {max_sentences} sentences, at most {max_words} words in all.
Say what problem the paper addresses, what the authors did and what they found, and why it \
matters.

Title: {title}

Abstract:
{abstract}"""


def summary_word_limit(max_tokens: int) -> int:
    """The summary length to ask for, so that the answer fits in ``max_tokens``."""
    return max(20, min(MAX_WORDS, max_tokens // TOKENS_PER_WORD))


def summary_messages(
    title: str, abstract: str, language: str, max_tokens: int
) -> list[dict[str, str]]:
    """The chat messages asking for a summary of the paper in ``language`` (an ISO 639-1 code)
    that fits in ``max_tokens``."""
    max_words = summary_word_limit(max_tokens)
    user = USER.format(
        language=language,
        min_sentences=2 if max_words < 60 else 3,
        max_sentences=3 if max_words < 60 else 5,
        max_words=max_words,
        title=title,
        abstract=abstract[:MAX_INPUT_CHARS],
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
