"""What a step receives: who it is, its parameters, upstream outputs and where to keep things."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.orchestration import records
from mlfactory.settings import Settings


@dataclass(frozen=True)
class Context:
    run_id: int
    pipeline: str
    step: str
    attempt: int
    engine: str
    params: BaseModel
    settings: Settings
    upstream: Mapping[str, dict[str, Any]]
    sessions: sessionmaker[Session]
    artifact_dir: Path
    log: logging.Logger

    def output_of(self, step: str) -> dict[str, Any]:
        """The output of an upstream step (a KeyError names the step when it is not upstream)."""
        try:
            return self.upstream[step]
        except KeyError:
            raise KeyError(f"step {self.step!r} has no output of {step!r}") from None

    def write_json(self, name: str, value: Any) -> Path:
        """Write ``value`` as an indented JSON artefact of this run and return its path."""
        path = self.artifact_dir / name
        path.write_text(json.dumps(value, indent=2, default=str))
        return path

    def update_run(self, **fields: Any) -> None:
        """Add metrics, a summary or links (``mlflow_run_id``, ``model_name``, ``model_version``)
        to this run's record."""
        records.update_run(self.sessions, self.run_id, **fields)


def run_artifact_dir(settings: Settings, pipeline: str, run_id: int) -> Path:
    path = settings.artifacts_dir / "runs" / pipeline / str(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path
