"""The model registry as clients browse it: every registered model with its champion, one
model's versions with their metrics, aliases and promotion verdicts, and the input schema of a
version (what a prediction form asks for).

Reads go through the client of :class:`~mlfactory.api.registry.ModelRegistry`. A registry that
does not answer raises :class:`~mlfactory.api.registry.RegistryUnavailable`; a model or version
it does not know is ``None``.

The calls a listing makes do not grow with the number of versions: the MLflow runs behind the
versions shown are read together (one search per 100 runs, in the experiments listed once), and
a champion's version is taken from the versions at hand (those listed, the model's latest), read
on its own only when it is older than them.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from mlflow.entities import Run, ViewType
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlfactory.api.registry import PIPELINE_RUN_TAG, ModelRegistry, RegistryUnavailable
from mlfactory.inference.champion import CHAMPION
from mlfactory.inference.schema import InputSchema

PROMOTION_TAG = "promotion"
"""Set on a model version by the champion rule (``training/promote.py``): its verdict."""
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
_PAGE = 100  # registered models per registry request
_RUNS_PER_SEARCH = 100  # run ids in one search_runs filter
_EXPERIMENTS_PAGE = 1000
_RUN_ID = re.compile(r"[0-9A-Za-z_-]+")  # what an MLflow run id is made of (quote-free)
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


class _NotFound(Exception):
    pass


@contextmanager
def _reading() -> Iterator[None]:
    """Registry errors as this module reports them: unknown -> _NotFound, others unavailable."""
    try:
        yield
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise _NotFound from None
        raise RegistryUnavailable(_without_credentials(f"{type(exc).__name__}: {exc}")) from exc
    except (_NotFound, RegistryUnavailable):
        raise
    except Exception as exc:
        raise RegistryUnavailable(_without_credentials(f"{type(exc).__name__}: {exc}")) from exc


def _without_credentials(message: str) -> str:
    """``message`` with the user and password of any URL in it (``scheme://user:pw@host``)
    replaced: MLflow's errors quote the tracking URI, which may carry them."""
    return _USERINFO.sub(r"\1***@", message)


def mlflow_ui(tracking_uri: str) -> str | None:
    """The MLflow web UI behind an HTTP tracking URI, without credentials; None for a local
    store (``sqlite:``, ``postgresql:``, a folder), which has no UI of its own."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def model_link(ui: str | None, name: str, version: str | None = None) -> str | None:
    if ui is None:
        return None
    page = f"{ui}/#/models/{quote(name, safe='')}"
    return f"{page}/versions/{quote(version, safe='')}" if version else page


def list_models(registry: ModelRegistry) -> list[dict[str, Any]]:
    """Every registered model, by name: aliases, latest version, and its champion's metrics."""
    client = registry.client
    models: list[RegisteredModel] = []
    token = None
    with _reading():
        while True:
            page = client.search_registered_models(
                max_results=_PAGE, order_by=["name ASC"], page_token=token
            )
            models.extend(page)
            token = page.token
            if not token:
                break
        champions = {model.name: _champion(client, model, []) for model in models}
        runs = _runs(client, [v.run_id for v in champions.values() if v is not None])
        return [_model_dict(model, champions[model.name], runs) for model in models]


def model_detail(registry: ModelRegistry, name: str, limit: int) -> dict[str, Any] | None:
    """One model and its ``limit`` newest versions, each with its MLflow run's metrics."""
    client = registry.client
    try:
        with _reading():
            model = client.get_registered_model(name)
            versions = _versions(client, name, limit)
            champion = _champion(client, model, versions)
            runs = _runs(client, [v.run_id for v in [*versions, champion] if v is not None])
            return _model_dict(model, champion, runs) | {
                "versions": [_version_dict(model, version, runs) for version in versions]
            }
    except _NotFound:
        return None


def version_inputs(registry: ModelRegistry, name: str, version: str | None) -> dict[str, Any]:
    """The input columns of ``version`` (the champion when None) and one example record.

    Raises LookupError saying what is missing (the model, the version, a champion), and
    :class:`~mlfactory.inference.schema.UnservableModel` for a signature the API cannot check.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    client = registry.client
    try:
        with _reading():
            if version is None:
                version = str(client.get_model_version_by_alias(name, CHAMPION).version)
            else:
                client.get_model_version(name, version)
    except _NotFound:
        wanted = f"version {version}" if version else f"{CHAMPION!r} version"
        raise LookupError(f"model {name!r} has no {wanted} in the registry") from None
    uri = f"models:/{name}/{version}"
    try:
        with _reading(), tempfile.TemporaryDirectory(prefix="mlfactory-inputs-") as folder:
            metadata = Model.load(download_artifacts(f"{uri}/MLmodel", dst_path=folder))
            example = None
            saved = metadata.saved_input_example_info
            if saved and saved.get("artifact_path"):
                download_artifacts(f"{uri}/{saved['artifact_path']}", dst_path=folder)
                example = _first_record(metadata.load_input_example(folder))
    except _NotFound:
        raise LookupError(f"model {name!r} version {version} has no logged model") from None
    schema = InputSchema.from_signature(metadata.signature, f"{name!r} version {version}")
    return {
        "model_name": name,
        "version": version,
        "columns": [
            {"name": c.name, "type": c.kind, "required": c.required} for c in schema.columns
        ],
        "example": example,
    }


def _versions(client: MlflowClient, name: str, limit: int) -> list[ModelVersion]:
    found = client.search_model_versions(
        _name_filter(name), max_results=max(limit, 1) * 2, order_by=["version_number DESC"]
    )
    return [version for version in found if version.name == name][:limit]


def _name_filter(name: str) -> str:
    """An MLflow filter selecting versions of ``name``, or a superset of them (to be narrowed
    in Python) when the name holds both kinds of quote, which no filter literal can."""
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    return f"name LIKE '{name.split(chr(39))[0]}%'"


def _model_dict(
    model: RegisteredModel, champion: ModelVersion | None, runs: dict[str, Run]
) -> dict[str, Any]:
    aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    latest = max((int(v.version) for v in model.latest_versions or ()), default=None)
    return {
        "name": model.name,
        "description": model.description or None,
        "created_at": _moment(model.creation_timestamp),
        "updated_at": _moment(model.last_updated_timestamp),
        "latest_version": None if latest is None else str(latest),
        "aliases": aliases,
        "champion_version": aliases.get(CHAMPION),
        "champion_metrics": _run(runs, champion.run_id)[0] if champion else {},
    }


def _champion(
    client: MlflowClient, model: RegisteredModel, versions: list[ModelVersion]
) -> ModelVersion | None:
    """The version the ``champion`` alias names: one of ``versions`` or of the model's latest
    versions when it is there, else read from the registry; None without a champion, or when
    the alias moved on to a version since deleted."""
    number = (model.aliases or {}).get(CHAMPION)
    if number is None:
        return None
    for version in [*versions, *(model.latest_versions or ())]:
        if version.name == model.name and str(version.version) == str(number):
            return version
    try:
        return client.get_model_version(model.name, str(number))
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:  # the alias moved on meanwhile
            return None
        raise


def _version_dict(
    model: RegisteredModel, version: ModelVersion, runs: dict[str, Run]
) -> dict[str, Any]:
    number = str(version.version)
    metrics, pipeline_run_id = _run(runs, version.run_id)
    return {
        "version": number,
        "created_at": _moment(version.creation_timestamp),
        "status": str(version.status),
        "aliases": sorted(a for a, v in (model.aliases or {}).items() if str(v) == number),
        "mlflow_run_id": version.run_id or None,
        "pipeline_run_id": pipeline_run_id,
        "metrics": metrics,
        "promotion": (version.tags or {}).get(PROMOTION_TAG),
    }


def _runs(client: MlflowClient, run_ids: Iterable[str | None]) -> dict[str, Run]:
    """The MLflow runs of ``run_ids`` the tracking store still has (deleted ones included), by
    id: one search per ``_RUNS_PER_SEARCH`` ids, in every experiment. An id no run can have
    (no quote may go into the filter) is left out, as a run the store no longer has."""
    wanted = sorted({run_id for run_id in run_ids if run_id and _RUN_ID.fullmatch(run_id)})
    if not wanted:
        return {}
    try:
        experiments = _experiment_ids(client)
        runs: dict[str, Run] = {}
        for start in range(0, len(wanted), _RUNS_PER_SEARCH):
            chunk = wanted[start : start + _RUNS_PER_SEARCH]
            listed = ", ".join(f"'{run_id}'" for run_id in chunk)
            found = client.search_runs(
                experiments,
                f"attributes.run_id IN ({listed})",
                run_view_type=ViewType.ALL,
                max_results=len(chunk),
            )
            runs.update((run.info.run_id, run) for run in found)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:  # no unknown model or version here: a failed search
            message = _without_credentials(f"{type(exc).__name__}: {exc}")
            raise RegistryUnavailable(message) from exc
        raise
    return runs


def _experiment_ids(client: MlflowClient) -> list[str]:
    """Every experiment, deleted ones included (their runs still answer ``get_run``)."""
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(
            view_type=ViewType.ALL, max_results=_EXPERIMENTS_PAGE, page_token=token
        )
        ids.extend(experiment.experiment_id for experiment in page)
        token = page.token
        if not token:
            return ids


def _run(runs: dict[str, Run], run_id: str | None) -> tuple[dict[str, float], int | None]:
    """The metrics of an MLflow run and the pipeline run it is tagged with ({} and None for no
    run, or a run the tracking store no longer has)."""
    run = runs.get(run_id) if run_id else None
    if run is None:
        return {}, None
    tag = run.data.tags.get(PIPELINE_RUN_TAG, "")
    return dict(run.data.metrics), int(tag) if tag.isdigit() else None


def _first_record(example: Any) -> dict[str, Any] | None:
    """The first row of a logged input example as JSON values (a frame, or records)."""
    if example is None:
        return None
    if hasattr(example, "to_json"):
        rows = json.loads(example.head(1).to_json(orient="records"))
        return rows[0] if rows else None
    if isinstance(example, list) and example and isinstance(example[0], dict):
        return example[0]
    return example if isinstance(example, dict) else None


def _moment(milliseconds: int | None) -> datetime | None:
    return None if milliseconds is None else datetime.fromtimestamp(milliseconds / 1000, UTC)
