"""Answering prediction requests: records shaped like source rows -> the model's input, checked
against its signature -> labels and class probabilities -> rows of ``predictions``.

``PredictionService`` runs the models on a fixed number of threads (one by default) and batches
the requests waiting for one: a model answers 16 queued one-record requests in one call for
little more than the price of one. Models are CPU-bound: a server giving every request its own
thread (FastAPI's sync routes share a pool of 40) gets slower as clients are added, the threads
fighting over the GIL and the cores, where a queue in front of one predicting thread keeps the
throughput of one client or raises it (figures in benchmarks/README.md, "Serving").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.datasets.columns import label_text, native
from mlfactory.errors import UserError
from mlfactory.inference.model_cache import ModelCache, ServedModel
from mlfactory.inference.schema import MISSING, FieldError
from mlfactory.store import Prediction, utcnow

# SQLite has one writer at a time. Writers of this process queue here, handed the turn at once,
# rather than in SQLite's busy handler, which retries after sleeps of up to 100 ms.
_SQLITE_WRITER = threading.Lock()

PREDICTIONS = Prediction.__table__
PREDICTIONS_COPY = (
    "COPY predictions (id, dataset, model_name, model_version, label, scores, created_at) "
    "FROM STDIN"
)

ToFeatures = Callable[[list[dict[str, Any]], list[str]], Any]  # records, columns -> input frame


class InvalidRecords(UserError):
    """Records the model cannot take; ``errors`` names each bad value."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        shown = "; ".join(f"record {e.record}, {e.field!r}: {e.message}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} invalid values: {shown}{more}")


class ModelRefused(UserError):
    """Values of the right types that the model cannot work with (out of its range, say)."""


@dataclass(frozen=True)
class Answer:
    label: Any  # of the label's type: "spam", 1, true
    probabilities: dict[str, float] | None  # by the label as text


def predict_records(
    served: ServedModel, records: list[dict[str, Any]], to_features: ToFeatures | None = None
) -> list[Answer]:
    """One answer per record, in order (see ``model_input`` and ``answer``)."""
    return answer(served, model_input(served, records, to_features))


def model_input(
    served: ServedModel, records: list[dict[str, Any]], to_features: ToFeatures | None = None
) -> Any:
    """The model's input for ``records``, one row per record; fields the model does not use are
    ignored. ``InvalidRecords`` names every bad value.

    Without ``to_features`` the records' fields are the model's input columns, checked against
    its signature before anything else; with it, the pipeline's function checks the records and
    makes the frame of the model's columns (a pipeline whose source rows need work before the
    model takes them, or whose declaration says what a record may hold).
    """
    schema = served.schema
    if to_features is None:
        columns = {name: [record.get(name, MISSING) for record in records] for name in schema.names}
        _raise_invalid(schema.check(columns))
        if served.takes_array:
            return np.array([columns[name] for name in schema.names], dtype=np.float64).T
        return _frame(served, columns)
    frame = to_features(records, schema.names)
    if len(frame) != len(records) or not set(schema.names) <= set(frame.columns):
        raise ValueError(
            f"the pipeline's to_features gave {len(frame)} rows with columns "
            f"{list(frame.columns)} for {len(records)} records; model {served.name} needs one "
            f"row per record with columns {schema.names}"
        )
    return frame[schema.names]


def answer(served: ServedModel, features: Any) -> list[Answer]:
    """Labels and probabilities for a model input. With probabilities, the label is the most
    probable class (what ``predict`` answers for logistic regression, forests, boosting and most
    classifiers), so one pass over the model gives both."""
    model = served.model
    if served.classes is None:
        return [Answer(native(label), None) for label in model.predict(features)]
    classes, labels = served.classes, served.labels
    probabilities = model.predict_proba(features)
    if not np.isfinite(probabilities).all():
        raise ValueError("the model gave probabilities that are not finite numbers")
    best = probabilities.argmax(axis=1).tolist()
    return [
        Answer(labels[index], dict(zip(classes, row, strict=True)))
        for index, row in zip(best, probabilities.tolist(), strict=True)
    ]


def store_predictions(
    sessions: sessionmaker[Session], dataset: str, served: ServedModel, answers: Sequence[Answer]
) -> list[int]:
    """Store one ``predictions`` row per answer (no item: they answer a request) in one
    transaction, with one multi-row INSERT on SQLite, one COPY on PostgreSQL; their ids, in
    order. Model name and version lead to the MLflow run, its training snapshot and the load
    batches behind it."""
    now = utcnow()
    with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            ids = _copy_predictions(session, dataset, served, answers, now)
            session.commit()
            return ids
        rows = [
            {
                "dataset": dataset,
                "model_name": served.name,
                "model_version": served.version,
                "label": label_text(item.label),
                "scores": item.probabilities or {},
                "created_at": now,
            }
            for item in answers
        ]
        # On SQLite, SQLAlchemy gives RETURNING rows in the order of the parameters only by
        # inserting row by row, several times slower. But a new row's id is one more than the
        # largest, and the transaction holds the only write lock: the ids, sorted, are in the
        # order of the rows.
        with _SQLITE_WRITER:
            ids = sorted(session.scalars(insert(PREDICTIONS).returning(PREDICTIONS.c.id), rows))
            session.commit()
        return ids


def _copy_predictions(
    session: Session,
    dataset: str,
    served: ServedModel,
    answers: Sequence[Answer],
    now: datetime,
) -> list[int]:
    """PostgreSQL: take the ids from the table's sequence, then COPY the rows with them, 4x
    faster than a multi-row INSERT ... RETURNING for 1,000 rows and as fast for one."""
    cursor = session.connection().connection.driver_connection.cursor()
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence('predictions', 'id')) FROM generate_series(1, %s)",
        (len(answers),),
    )
    ids = [row[0] for row in cursor.fetchall()]
    with cursor.copy(PREDICTIONS_COPY) as copy:
        for prediction_id, item in zip(ids, answers, strict=True):
            scores = orjson.dumps(item.probabilities or {}).decode()
            copy.write_row(
                (
                    prediction_id,
                    dataset,
                    served.name,
                    served.version,
                    label_text(item.label),
                    scores,
                    now,
                )
            )
    return ids


@dataclass(frozen=True)
class _Job:
    served: ServedModel
    records: list[dict[str, Any]]
    to_features: ToFeatures | None
    result: Future[list[Answer]] = field(default_factory=Future)


class PredictionService:
    """The champions of a process and the threads that predict with them.

    Each request queues a job and a turn on one of ``max_in_flight`` threads. A turn takes every
    job queued for the same model version, up to ``max_batch_rows`` rows (at least one job),
    and answers them with one call of the model; turns that find the queue empty end at once.
    One client sees no delay (its job is alone); many clients share calls. Models answer each
    row on its own, so a batch gives every request the answers it would get alone; if the
    batch fails, its jobs are answered one by one, and only the job at fault fails.
    """

    def __init__(
        self, models: ModelCache, *, max_in_flight: int = 1, max_batch_rows: int = 1000
    ) -> None:
        self.models = models
        self.max_batch_rows = max_batch_rows
        self._threads = ThreadPoolExecutor(max_in_flight, thread_name_prefix="predict")
        self._queue: list[_Job] = []
        self._lock = threading.Lock()

    async def predict(
        self, served: ServedModel, records: list[dict[str, Any]], to_features: ToFeatures | None
    ) -> list[Answer]:
        job = _Job(served, records, to_features)
        with self._lock:
            self._queue.append(job)
        self._threads.submit(self._turn)
        return await asyncio.wrap_future(job.result)

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self.models.close()

    def _turn(self) -> None:
        with self._lock:
            if not self._queue:
                return
            served, rows = self._queue[0].served, 0
            batch, rest = [], []
            for job in self._queue:
                fits = not batch or rows + len(job.records) <= self.max_batch_rows
                if job.served is served and fits:
                    batch.append(job)
                    rows += len(job.records)
                else:
                    rest.append(job)
            self._queue = rest
        # A job whose request was cancelled meanwhile is dropped; the others can no longer be.
        _answer_jobs(served, [job for job in batch if job.result.set_running_or_notify_cancel()])


def _answer_jobs(served: ServedModel, jobs: list[_Job]) -> None:
    ready = []
    for job in jobs:
        try:
            ready.append((job, model_input(served, job.records, job.to_features)))
        except Exception as exc:  # the job's own failure (InvalidRecords): its request's answer
            job.result.set_exception(exc)
    if len(ready) > 1:
        try:
            answers = answer(served, _stack([features for _, features in ready]))
        except Exception:
            answers = None  # find the job at fault: each on its own below
        if answers is not None:
            start = 0
            for job, _ in ready:
                job.result.set_result(answers[start : start + len(job.records)])
                start += len(job.records)
            return
    for job, features in ready:
        try:
            job.result.set_result(answer(served, features))
        except ValueError as exc:  # how scikit-learn refuses input (infinite after scaling, ...)
            job.result.set_exception(ModelRefused(f"the model cannot answer these records: {exc}"))
        except Exception as exc:
            job.result.set_exception(exc)


def _stack(inputs: list[Any]) -> Any:
    if isinstance(inputs[0], np.ndarray):
        return np.concatenate(inputs)
    import pandas as pd

    return pd.concat(inputs, ignore_index=True)


def _raise_invalid(errors: list[FieldError]) -> None:
    if errors:
        raise InvalidRecords(errors)


def _frame(served: ServedModel, columns: dict[str, list[Any]]) -> Any:
    """The model's input frame from checked values, with the dtypes of the signature."""
    import pandas as pd

    dtypes = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}
    data = {}
    for column in served.schema.columns:
        values = [None if value is MISSING else value for value in columns[column.name]]
        if column.kind in dtypes and column.required:
            data[column.name] = np.array(values, dtype=dtypes[column.kind])
        elif column.kind == "datetime":
            data[column.name] = pd.to_datetime(values)
        else:
            data[column.name] = values
    return pd.DataFrame(data, columns=served.schema.names)
