"""The ``arxiv_*`` pipelines: new arXiv papers flow in, each gets a subject and a summary.

- ``arxiv_backfill`` (manual): a large historical fetch (or the offline CSV snapshot) to train on.
- ``arxiv_train`` (manual and weekly): the subject classifier trained two ways, the better one
  registered and promoted by the champion rule.
- ``arxiv_ingest`` (every 8 minutes): what is new on arXiv since the watermark in the store.
- ``arxiv_classify`` (every 45 minutes): a subject for every article without one from the champion.
- ``arxiv_summarize`` (every 30 minutes): a plain-language summary for every article without one.
- ``arxiv_monitor`` (daily): drift of recent articles against the training snapshot.
- ``arxiv_maintenance`` (manual): purge old predictions, summaries and runs.

Classification and summarisation select their own pending work from the store, so every
article gets both, whatever order they run in.
"""
