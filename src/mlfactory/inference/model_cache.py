"""The champion of each model name, loaded once, kept in memory, swapped when the alias moves.

``ModelCache.cached(name)`` answers from memory and never blocks. When the entry's last look at
the registry is ``poll_seconds`` old, that call also starts a background check (one per name at
a time): it resolves alias ``champion`` and, if it names another version, loads that version in
the background thread and swaps it in with one assignment. A request holds on to the
``ServedModel`` it was handed, so requests in flight finish on the version they started with,
the response names the version that answered, and no request waits for a swap. Only the first
request for a name waits for its load (``get``). A failing check or load is logged; the old
version goes on serving and the next check comes one interval later. ``reload(name)`` checks and
loads at once, for an operator who will not wait for the interval.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlfactory.datasets.columns import label_text, native
from mlfactory.inference.champion import champion_version, registry_client
from mlfactory.inference.schema import InputSchema
from mlfactory.settings import Settings

logger = logging.getLogger(__name__)

# When the array fast path is taken (see ``_takes_array``), the columns are exactly the ones the
# model was fitted with, in order; scikit-learn would otherwise put a warning that the array has
# no column names in the server's log, which reads like a bug.
warnings.filterwarnings(
    "ignore", message="X does not have valid feature names", category=UserWarning
)


@dataclass(frozen=True)
class ServedModel:
    """One registered model version, ready to answer."""

    name: str
    version: str
    run_id: str  # the MLflow run that logged it: the lineage of its predictions
    model: Any  # the native scikit-learn estimator
    schema: InputSchema
    classes: tuple[str, ...] | None  # predict_proba's columns, as text; None: no probabilities
    labels: tuple[Any, ...]  # the same classes as the labels answered: "spam", 1, True
    takes_array: bool  # answers a float64 array in schema order exactly as it answers a frame


Resolve = Callable[[str], tuple[str, str]]  # model name -> (champion version, its run id)
Load = Callable[[str, str, str], ServedModel]  # (name, version, run id) -> the loaded version
OnLoad = Callable[[ServedModel, float], None]  # a version was loaded, in that many seconds


def load_version(name: str, version: str, run_id: str) -> ServedModel:
    """Load ``models:/name/version`` from the registry MLflow is pointed at: the estimator, its
    input schema (the signature) and its input example, fetched once."""
    import mlflow.sklearn
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="mlfactory-model-") as folder:
        path = download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=folder)
        metadata = Model.load(path)
        model = mlflow.sklearn.load_model(path)
        example = metadata.load_input_example(path)
    schema = InputSchema.from_signature(metadata.signature, f"{name!r} version {version}")
    has_probabilities = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    return ServedModel(
        name=name,
        version=version,
        run_id=run_id,
        model=model,
        schema=schema,
        classes=tuple(label_text(native(c)) or "" for c in model.classes_)
        if has_probabilities
        else None,
        labels=tuple(native(label) for label in getattr(model, "classes_", ())),
        takes_array=_takes_array(model, schema, example),
    )


def _takes_array(model: Any, schema: InputSchema, example: Any) -> bool:
    """Whether requests may skip building a pandas frame: scikit-learn's checks of a frame cost
    ~0.3-0.5 ms per call, more than a small model's prediction. Only for an all-float schema in
    the order the model was fitted with, and only if the model gives the same answers for the
    logged input example as an array as it does as a frame (a ColumnTransformer selecting
    columns by name, for one, refuses arrays)."""
    fitted = getattr(model, "feature_names_in_", None)
    if (
        not schema.numeric
        or example is None
        or (fitted is not None and list(fitted) != schema.names)
    ):
        return False
    answer = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    try:
        frame = example[schema.names].astype("float64")
        return bool(np.array_equal(answer(frame), answer(frame.to_numpy())))
    except Exception:  # whatever refuses an array takes the frame path
        return False


@dataclass
class _Entry:
    model: ServedModel
    checked_at: float
    check: Future[None] | None = None


class ModelCache:
    """Champions by model name; see the module's docstring."""

    def __init__(
        self,
        resolve: Resolve,
        load: Load,
        *,
        poll_seconds: float,
        on_load: OnLoad | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._load = load
        self._poll_seconds = poll_seconds
        self._on_load = on_load
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # guards _entries, their fields and _loading
        self._loading: dict[str, threading.Lock] = {}  # one load of a name at a time
        self._checks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="champion-check")

    @classmethod
    def for_registry(cls, settings: Settings, on_load: OnLoad | None = None) -> ModelCache:
        """A cache of the champions in the configured registry, polled every
        ``settings.model_poll_seconds``."""
        client = registry_client(settings)
        return cls(
            lambda name: champion_version(client, name),
            load_version,
            poll_seconds=settings.model_poll_seconds,
            on_load=on_load,
        )

    def cached(self, name: str) -> ServedModel | None:
        """The version in memory (None before the first load), starting a background check of
        the alias when the last one is ``poll_seconds`` old."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            due = self._clock() - entry.checked_at >= self._poll_seconds
            if due and entry.check is None:
                entry.check = self._checks.submit(self._check, name)
            return entry.model

    def get(self, name: str) -> ServedModel:
        """The version in memory, or the champion loaded now (the first call for a name waits for
        it; concurrent first calls share one load). ``NoChampionError`` when there is none."""
        served = self.cached(name)
        if served is not None:
            return served
        with self._name_lock(name):
            served = self.cached(name)  # loaded by another caller while this one waited
            if served is None:
                served = self._load_champion(name)
        return served

    def reload(self, name: str) -> tuple[str | None, str]:
        """Look at the alias now and load the version it names if that is not the one in memory:
        (version served before, version served now). Errors propagate; the old version stays."""
        with self._name_lock(name):
            with self._lock:
                entry = self._entries.get(name)
            before = None if entry is None else entry.model.version
            return before, self._load_champion(name).version

    def versions(self) -> dict[str, str]:
        """The version in memory per model name."""
        with self._lock:
            return {name: entry.model.version for name, entry in self._entries.items()}

    def settle(self) -> None:
        """Wait for the background checks in progress (tests; shutdown)."""
        with self._lock:
            checks = [entry.check for entry in self._entries.values() if entry.check is not None]
        for check in checks:
            check.result()

    def close(self) -> None:
        self._checks.shutdown(wait=True, cancel_futures=True)

    def _name_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(name, threading.Lock())

    def _load_champion(self, name: str) -> ServedModel:
        """Resolve the alias and make its version the one in memory, loading it unless it is
        there already. The caller holds the name's lock."""
        version, run_id = self._resolve(name)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None and entry.model.version == version:
            served = entry.model
        else:
            started = time.perf_counter()
            served = self._load(name, version, run_id)
            seconds = time.perf_counter() - started
            logger.info("loaded model %s version %s in %.2fs", name, version, seconds)
            if self._on_load is not None:
                self._on_load(served, seconds)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                self._entries[name] = _Entry(served, now)
            else:
                entry.model, entry.checked_at = served, now  # the swap
        return served

    def _check(self, name: str) -> None:
        """The background check: swap in a new champion, or keep serving the old one."""
        try:
            with self._name_lock(name):
                self._load_champion(name)
        except Exception:
            with self._lock:
                entry = self._entries[name]
                entry.checked_at = self._clock()
            logger.exception(
                "checking the champion of %s failed; version %s goes on serving",
                name,
                entry.model.version,
            )
        finally:
            with self._lock:
                self._entries[name].check = None
