"""Source kinds: how the rows of a declared data set are read.

Every kind, the built-in ones included, is an entry point of the group ``mlfactory.sources``: a
callable taking a :class:`SourceRequest` and returning :class:`SourceRows`. File kinds (csv,
jsonl, parquet, folder) give raw fields that the declaration types, keys and labels; a kind
that keys its own rows (the arXiv API) gives ready :class:`~mlfactory.ingest.loader.Record`\\ s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from mlfactory.datasets.declarations import Dataset
from mlfactory.errors import UserError
from mlfactory.ingest.csv_reader import BadRow, SourceRow
from mlfactory.ingest.loader import Record
from mlfactory.settings import Settings

GROUP = "mlfactory.sources"


@dataclass(frozen=True)
class SourceRequest:
    """What a kind is asked to read."""

    dataset: Dataset
    settings: Settings
    folder: Path
    """Where the declaration's relative paths are read from (its project file's folder)."""
    path: Path | None = None
    """A file (or folder) given for this load, read instead of the declared location."""


@dataclass(frozen=True)
class SourceRows:
    rows: Iterable[SourceRow | BadRow | Record]
    origin: str
    """Where the rows come from, as a load batch records it (a path, a URL)."""
    columns: list[str] | None = None
    """The source's columns when it knows them before any row (a CSV header)."""


SourceKind = Callable[[SourceRequest], SourceRows]


class UnknownSourceKind(UserError):
    pass


class SourceOutsideRoots(UserError):
    """A run asked to read a file outside the folders runs may read."""


def readable_source(settings: Settings, path: Path) -> Path:
    """``path`` resolved (links followed), once it is found to lie under one of the folders
    runs may read (``MLF_SOURCE_ROOTS``): a run parameter, which an API caller can set, never
    makes the server read any file it can see."""
    resolved = path.expanduser().resolve()
    roots = settings.readable_roots
    if not any(resolved.is_relative_to(root) for root in roots):
        shown = ", ".join(str(root) for root in roots)
        raise SourceOutsideRoots(
            f"{path} is outside the folders a run may read ({shown}; MLF_SOURCE_ROOTS)"
        )
    return resolved


@cache
def _kinds() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def source_kind(name: str) -> SourceKind:
    entry = _kinds().get(name)
    if entry is None:
        known = ", ".join(sorted(_kinds())) or "none"
        raise UnknownSourceKind(f"unknown source kind {name!r} (registered: {known})")
    kind = entry.load()
    if not callable(kind):
        raise TypeError(f"source kind {name!r} ({entry.value}) is not callable")
    return kind  # type: ignore[no-any-return]
