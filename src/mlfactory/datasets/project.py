"""The registry of declared data sets and pipelines: the declarations shipped with mlfactory
(``builtin.yaml``) plus the project file (``MLF_PROJECT_FILE``, else ``./mlfactory.yaml``).

One mechanism for both: the built-in data sets and pipelines are declarations like a user's.
A mistake is a :class:`DeclarationError` naming the file, the line and the field. Files are
parsed again only when they change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from mlfactory.datasets.declarations import (
    TABULAR_TYPES,
    Dataset,
    PipelineDeclaration,
    ProjectFile,
)
from mlfactory.errors import UserError
from mlfactory.settings import Settings

BUILTIN = "builtin.yaml"
CODE_PIPELINES = "mlfactory.pipelines"  # the entry points of pipelines written in code
Loc = tuple[str | int, ...]
# Parts of a pydantic error location that name a type it tried, not a field of the file.
_INTERNAL = re.compile(r"^(str|int|float|bool|date|datetime|list|dict|none)$|[\[\]]|^function-")


class DeclarationError(UserError):
    """A project file that cannot be used: the message names the file, the line and the field."""


class UnknownDataset(UserError):
    pass


@dataclass(frozen=True, eq=False)
class Declarations:
    """Every declared data set and pipeline, checked against each other."""

    datasets: dict[str, Dataset] = field(default_factory=dict)
    pipelines: dict[str, PipelineDeclaration] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    """Data set -> the folder its relative source paths are read from (its file's)."""
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    """(``datasets`` or ``pipelines``, name) -> the file that declares it."""

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise UnknownDataset(f"unknown data set {name!r} (declared: {known})") from None


def declarations(settings: Settings) -> Declarations:
    """The built-in declarations and the project file's (if there is one), checked together."""
    builtin = _builtin_file()
    project = settings.project_file
    if project is None:
        return _read((builtin, _stamp(builtin)))
    if not project.is_file():
        raise DeclarationError(f"{project}: no such project file (MLF_PROJECT_FILE)")
    return _read((builtin, _stamp(builtin)), (project, _stamp(project)))


def get_dataset(settings: Settings, name: str) -> Dataset:
    return declarations(settings).dataset(name)


def project_file(settings: Settings) -> Path:
    """The project file that ``data add`` writes: the configured one, else ./mlfactory.yaml."""
    return settings.project_file or Path("mlfactory.yaml").resolve()


def _builtin_file() -> Path:
    return Path(str(resources.files("mlfactory.datasets") / BUILTIN))


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=8)
def _read(*files: tuple[Path, tuple[int, int]]) -> Declarations:
    merged = Declarations()
    lines: dict[Path, dict[Loc, int]] = {}
    raw: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, _ in files:
        tree, lines[path] = _parse(path)
        top = _validate(ProjectFile, tree, path, lines[path], ())
        for section in ("datasets", "pipelines"):
            for name, body in getattr(top, section).items():
                where = merged.files.get((section, name))
                if where is not None:
                    message = f"{name!r} is already declared in {where}"
                    _fail(path, lines[path], (section, name), message)
                merged.files[(section, name)] = path
                raw[f"{section}:{name}"] = (path, body)
    for key, (path, body) in raw.items():
        section, name = key.split(":", 1)
        model = Dataset if section == "datasets" else PipelineDeclaration
        if not isinstance(body, dict):
            _fail(path, lines[path], (section, name), "must be a mapping of fields")
        declared = _validate(model, {"name": name, **body}, path, lines[path], (section, name))
        if isinstance(declared, Dataset):
            merged.datasets[name] = declared
            merged.folders[name] = path.parent
        else:
            assert isinstance(declared, PipelineDeclaration)
            merged.pipelines[name] = declared
    in_code = {entry.name: entry.value for entry in entry_points(group=CODE_PIPELINES)}
    for name, pipeline in merged.pipelines.items():
        path = merged.files[("pipelines", name)]
        if name in in_code:
            message = f"{name!r} is already the name of a pipeline in code ({in_code[name]})"
            _fail(path, lines[path], ("pipelines", name), message)
        for loc, message in pipeline_problems(pipeline, merged.datasets):
            _fail(path, lines[path], ("pipelines", name, *loc), message)
    return merged


def pipeline_problems(
    pipeline: PipelineDeclaration, datasets: dict[str, Dataset]
) -> list[tuple[Loc, str]]:
    """What a pipeline declaration says that its data set contradicts, as (field, message)."""
    dataset = datasets.get(pipeline.dataset)
    if dataset is None:
        known = ", ".join(sorted(datasets)) or "none"
        return [(("dataset",), f"unknown data set {pipeline.dataset!r} (declared: {known})")]
    if not dataset.columns:
        return [(("dataset",), f"data set {dataset.name!r} declares no columns to train on")]
    if dataset.label is None:
        return [(("dataset",), f"data set {dataset.name!r} declares no label to learn")]
    problems: list[tuple[Loc, str]] = []
    if pipeline.label is not None and pipeline.label != dataset.label.column:
        problems.append(
            (("label",), f"the label of data set {dataset.name!r} is {dataset.label.column!r}")
        )
    text = text_columns(pipeline, dataset)
    for index, column in enumerate(pipeline.text or ()):
        declared = dataset.columns.get(column)
        if declared is None or declared.type != "text":
            problems.append((("text", index), f"{column!r} is not a text column of the data set"))
    if pipeline.template == "text_classification" and not text:
        problems.append((("text",), f"data set {dataset.name!r} has no text column"))
    for index, column in enumerate(pipeline.features or ()):
        declared = dataset.columns.get(column)
        if declared is None:
            problems.append((("features", index), f"{column!r} is not a column of the data set"))
        elif column == dataset.label.column:
            problems.append((("features", index), f"{column!r} is the label"))
        elif declared.type not in TABULAR_TYPES:
            usable = ", ".join(sorted(TABULAR_TYPES))
            problems.append(
                (("features", index), f"{column!r} is {declared.type}; features are {usable}")
            )
    if pipeline.template == "tabular_classification" and not feature_columns(pipeline, dataset):
        problems.append((("features",), f"data set {dataset.name!r} has no usable feature"))
    return problems


def feature_columns(pipeline: PipelineDeclaration, dataset: Dataset) -> list[str]:
    """The tabular inputs of a pipeline: those declared, else (tabular template) every number,
    integer, category, boolean and date column that is neither the label nor a key column."""
    if pipeline.features is not None:
        return list(pipeline.features)
    if pipeline.template != "tabular_classification":
        return []
    label = dataset.label.column if dataset.label else None
    keys = dataset.key if isinstance(dataset.key, list) else []
    return [
        name
        for name, column in dataset.columns.items()
        if column.type in TABULAR_TYPES and name != label and name not in keys
    ]


def text_columns(pipeline: PipelineDeclaration, dataset: Dataset) -> list[str]:
    """The text inputs of a pipeline: those declared, else (text template) every text column."""
    if pipeline.text is not None:
        return list(pipeline.text)
    if pipeline.template != "text_classification":
        return []
    return [name for name, column in dataset.columns.items() if column.type == "text"]


def add_declarations(path: Path, entries: dict[str, dict[str, Any]], note: str) -> None:
    """Add ``entries`` (section, ``datasets`` or ``pipelines`` -> name -> declaration) to the
    project file at ``path`` (created if missing), keeping what it holds and its comments;
    ``note`` becomes a comment above each new entry. The file is replaced only once the result
    reads back as valid declarations: otherwise it is left as it was and the error names what
    is wrong."""
    from ruamel.yaml.comments import CommentedMap as Map

    tree = read_yaml(path) if path.is_file() else None
    tree = tree if tree is not None else Map()
    if not isinstance(tree, Map):
        raise DeclarationError(f"{path}: the top level is not a mapping")
    for section, named in entries.items():
        part = tree.get(section)
        if part is None:
            part = tree[section] = Map()
        taken = sorted(set(named) & set(part))
        if taken:
            raise DeclarationError(f"{path}: {section} {', '.join(taken)} already declared")
        for name, body in named.items():
            part[name] = _flow_columns(body)
            part.yaml_set_comment_before_after_key(name, before=note, indent=2)
    writer = YAML()
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.width = 100
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as stream:
        writer.dump(tree, stream)
    try:
        builtin = _builtin_file()
        _read((builtin, _stamp(builtin)), (temporary, _stamp(temporary)))
    except DeclarationError as exc:
        temporary.unlink()
        raise DeclarationError(str(exc).replace(str(temporary), str(path))) from None
    temporary.replace(path)


def _flow_columns(body: dict[str, Any]) -> Any:
    """A declaration as YAML mappings, each column's own mapping on one line."""
    from ruamel.yaml.comments import CommentedMap as Map

    mapping = Map()
    for key, value in body.items():
        if isinstance(value, dict):
            inner = Map()
            for name, item in value.items():
                if isinstance(item, dict):
                    flow = Map(item)
                    flow.fa.set_flow_style()
                    inner[name] = flow
                else:
                    inner[name] = item
            if key == "source":
                inner.fa.set_flow_style()
            mapping[key] = inner
        else:
            mapping[key] = value
    return mapping


# ---------------------------------------------------------------------------------------------
# Reading YAML with the line of every field


def read_yaml(path: Path) -> Any:
    """The round-trip tree of a YAML file (comments kept), for reading or rewriting it."""
    try:
        with path.open(encoding="utf-8") as stream:
            return YAML().load(stream)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise DeclarationError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeclarationError(f"{path}: cannot read: {exc}") from None


def _parse(path: Path) -> tuple[Any, dict[Loc, int]]:
    tree = read_yaml(path)
    if tree is None:
        return {}, {}
    lines: dict[Loc, int] = {}
    _collect_lines(tree, (), lines)
    return plain(tree), lines


def _collect_lines(node: Any, loc: Loc, lines: dict[Loc, int]) -> None:
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            where = node.lc.data.get(key)  # none for a key merged in from an anchor (<<: *a)
            if where is not None:
                lines[(*loc, plain(key))] = where[0] + 1
            _collect_lines(value, (*loc, plain(key)), lines)
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            lines[(*loc, index)] = node.lc.item(index)[0] + 1
            _collect_lines(value, (*loc, index), lines)


def plain(node: Any) -> Any:
    """A ruamel tree as plain dicts, lists, strings, numbers, booleans and dates."""
    if isinstance(node, dict):
        return {plain(key): plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(value) for value in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, datetime):
        return datetime.fromisoformat(node.isoformat())
    if isinstance(node, date):
        return date.fromisoformat(node.isoformat())
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _validate(model: Any, value: Any, path: Path, lines: dict[Loc, int], prefix: Loc) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = re.sub(r"^Value error, ", "", error["msg"]) + more
        _fail(path, lines, (*prefix, *error["loc"]), message)


def _fail(path: Path, lines: dict[Loc, int], loc: Loc, message: str) -> Any:
    """Raise a DeclarationError at the line of the deepest part of ``loc`` the file has."""
    known: Loc = ()
    for part in loc:  # parts the file does not have (pydantic's union branches) are skipped
        if (*known, part) in lines:
            known = (*known, part)
    line = lines.get(known, 1)
    shown = [part for part in loc if not _INTERNAL.search(str(part))]
    field_name = ".".join(str(part) for part in shown) or "top level"
    raise DeclarationError(f"{path}:{line}: {field_name}: {message}")
