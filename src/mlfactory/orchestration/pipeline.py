"""What a pipeline is: named steps with dependencies, a schedule, retries, parameters and hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from mlfactory.orchestration.context import Context
    from mlfactory.orchestration.runner import RunOutcome

StepFn = Callable[["Context"], dict[str, Any] | None]
Hook = Callable[["RunOutcome"], None]


class NoParams(BaseModel):
    """The parameters of a pipeline that declares none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Step:
    """A plain function of a Context; what it returns must be small and JSON-serialisable.

    ``retries`` and ``retry_delay`` (seconds) default to the pipeline's values.
    """

    name: str
    fn: StepFn
    needs: tuple[str, ...] = ()
    retries: int | None = None
    retry_delay: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Serving:
    """How the API serves a pipeline's champion: the registered model it predicts with and,
    when the model's input is not simply the source fields it was trained on, the function
    turning records shaped like source rows into that input: ``to_features(records, columns)``
    gives a frame of the model's input ``columns``, one row per record, or raises an error
    naming the bad values."""

    model_name: str
    to_features: Callable[[list[dict[str, Any]], list[str]], Any] | None = None


@dataclass(frozen=True)
class Pipeline:
    """A named graph of steps; the same definition runs locally and on Airflow."""

    name: str
    steps: tuple[Step, ...]
    description: str = ""
    schedule: str | timedelta | None = None  # cron, preset such as "@daily", or an interval
    params: type[BaseModel] = NoParams
    retries: int = 0
    retry_delay: float = 0.0
    tags: tuple[str, ...] = ()
    on_success: tuple[Hook, ...] = ()
    on_failure: tuple[Hook, ...] = ()
    serving: Serving | None = None
    notify_to: tuple[str, ...] = ()  # mail recipients of this pipeline (else MLF_NOTIFY_TO)
    notify_success: bool = True  # False: only failures are announced (frequent pipelines)
    _order: tuple[Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {step.name: step for step in self.steps}
        if len(by_name) != len(self.steps):
            raise ValueError(f"pipeline {self.name!r}: step names must be unique")
        graph: dict[str, tuple[str, ...]] = {}
        for step in self.steps:
            missing = [need for need in step.needs if need not in by_name]
            if missing:
                raise ValueError(
                    f"pipeline {self.name!r}: step {step.name!r} needs unknown {missing}"
                )
            graph[step.name] = step.needs
        try:
            order = list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            raise ValueError(f"pipeline {self.name!r}: steps form a cycle {exc.args[1]}") from exc
        object.__setattr__(self, "_order", tuple(by_name[name] for name in order))

    @property
    def schedule_text(self) -> str | None:
        """The schedule as people read it: the cron expression or preset, or "every N minutes"."""
        if isinstance(self.schedule, timedelta):
            minutes, seconds = divmod(int(self.schedule.total_seconds()), 60)
            return f"every {minutes} minutes" if not seconds else f"every {self.schedule}"
        return self.schedule

    def ordered_steps(self) -> tuple[Step, ...]:
        """Steps in an order where every step comes after the steps it needs."""
        return self._order

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)

    def retry_policy(self, step: Step) -> tuple[int, float]:
        """(retries, delay in seconds) for ``step``, falling back to the pipeline's defaults."""
        retries = self.retries if step.retries is None else step.retries
        delay = self.retry_delay if step.retry_delay is None else step.retry_delay
        return retries, delay
