"""The model registry as clients browse it: every registered model with its champion, one
model's versions with their metrics, aliases and promotion verdicts, and the input schema of a
version (what a prediction form asks for).

Reads go through the client of :class:`~mlfactory.api.registry.ModelRegistry`. A registry that
does not answer raises :class:`~mlfactory.api.registry.RegistryUnavailable`; a model or version
it does not know is ``None``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from mlfactory.api.registry import PIPELINE_RUN_TAG, ModelRegistry, RegistryUnavailable
from mlfactory.inference.champion import CHAMPION
from mlfactory.inference.schema import InputSchema

PROMOTION_TAG = "promotion"
"""Set on a model version by the champion rule (``training/promote.py``): its verdict."""
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
_PAGE = 100  # registered models per registry request
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
        return [_model_dict(registry, model) for model in models]


def model_detail(registry: ModelRegistry, name: str, limit: int) -> dict[str, Any] | None:
    """One model and its ``limit`` newest versions, each with its MLflow run's metrics."""
    try:
        with _reading():
            model = registry.client.get_registered_model(name)
            versions = _versions(registry, name, limit)
            return _model_dict(registry, model) | {
                "versions": [_version_dict(registry, model, version) for version in versions]
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


def _versions(registry: ModelRegistry, name: str, limit: int) -> list[ModelVersion]:
    found = registry.client.search_model_versions(
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


def _model_dict(registry: ModelRegistry, model: RegisteredModel) -> dict[str, Any]:
    aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    champion = aliases.get(CHAMPION)
    latest = max((int(v.version) for v in model.latest_versions or ()), default=None)
    return {
        "name": model.name,
        "description": model.description or None,
        "created_at": _moment(model.creation_timestamp),
        "updated_at": _moment(model.last_updated_timestamp),
        "latest_version": None if latest is None else str(latest),
        "aliases": aliases,
        "champion_version": champion,
        "champion_metrics": _champion_metrics(registry, model.name, champion),
    }


def _champion_metrics(registry: ModelRegistry, name: str, champion: str | None) -> dict[str, float]:
    if champion is None:
        return {}
    try:
        run_id = registry.client.get_model_version(name, champion).run_id
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:  # the alias moved on meanwhile
            return {}
        raise
    return _run(registry, run_id)[0] if run_id else {}


def _version_dict(
    registry: ModelRegistry, model: RegisteredModel, version: ModelVersion
) -> dict[str, Any]:
    number = str(version.version)
    metrics, pipeline_run_id = _run(registry, version.run_id) if version.run_id else ({}, None)
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


def _run(registry: ModelRegistry, run_id: str) -> tuple[dict[str, float], int | None]:
    """The metrics of an MLflow run and the pipeline run it is tagged with ({} and None for a
    run the tracking store no longer has)."""
    try:
        run = registry.client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return {}, None
        raise
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
