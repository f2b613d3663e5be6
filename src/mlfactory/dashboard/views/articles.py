"""Articles: the arXiv papers loaded so far, per subject, newest first; one paper with its
abstract, summary and predicted subject."""

from __future__ import annotations

from typing import Any

import streamlit as st

from mlfactory.dashboard import charts, session

ALL = "all subjects"
PAGE = 50
INGEST = "arxiv_ingest"  # the pipeline that fetches new papers


def main() -> None:
    st.title("Articles")
    api = session.client()
    overall = api.articles(limit=1)
    if not overall["total"]:
        st.info(f"No articles yet: run `mlfactory run {INGEST}` to fetch papers.")
        return
    first, second = st.columns(2)
    first.metric("Articles", overall["total"])
    second.metric("Subjects", len(overall["subjects"]))
    st.subheader("Papers per subject")
    st.altair_chart(charts.counts(overall["subjects"], "subject", "papers"), width="stretch")

    left, right = st.columns([1, 2])
    subject = left.selectbox("Subject", [ALL, *overall["subjects"]])
    words = right.text_input("Search titles, abstracts and authors")
    page = api.articles(
        limit=PAGE, subject=None if subject == ALL else subject, q=words.strip() or None
    )
    if not page["articles"]:
        st.info("No article matches.")
        return
    st.caption(f"The newest {len(page['articles'])} of {page['total']} matching articles.")
    st.dataframe([_row(article) for article in page["articles"]], hide_index=True)
    titles = {f"{a['title']} ({a['arxiv_id']})": a["id"] for a in page["articles"]}
    _detail(api.article(titles[st.selectbox("Article", list(titles))]))


def _row(article: dict[str, Any]) -> dict[str, Any]:
    predicted = article["prediction"] or {}
    return {
        "published": article["published"],
        "title": article["title"],
        "subject": article["subject"],
        "predicted": predicted.get("label"),
        "confidence": predicted.get("confidence"),
        "summary": "yes" if article["summarised"] else "",
        "arXiv": article["arxiv_id"],
    }


def _detail(article: dict[str, Any]) -> None:
    st.subheader(article["title"])
    st.caption(", ".join(article["authors"]) or "authors unknown")
    first, second, third = st.columns(3)
    first.metric("Subject", article["subject"] or "none")
    predicted = article["prediction"]
    if predicted:
        confidence = predicted["confidence"]
        second.metric("Predicted subject", predicted["label"])
        third.metric("Confidence", "n/a" if confidence is None else f"{confidence:.1%}")
    else:
        second.metric("Predicted subject", "not yet")
    if article["link"]:
        st.markdown(f"[{article['arxiv_id']} on arXiv]({article['link']})")
    st.markdown("**Summary**")
    summary = article["summary"]
    if summary and summary["content"]:
        st.write(summary["content"])
        st.caption(f"by {summary['producer']} {summary['producer_version']}")
    else:
        st.info("No summary yet: the arxiv pipeline writes one for every paper.")
    st.markdown("**Abstract**")
    st.write(article["abstract"])


if __name__ == "__main__":
    main()
