"""The champion rule: alias ``champion`` moves only when a new version beats it on the same set.

Otherwise the new version gets alias ``challenger``. The old champion stays loadable by version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import mlflow.sklearn
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: str
    alias: str
    metric: str
    score: float
    champion_version: str | None
    champion_score: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_champion(client: MlflowClient, model_name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    metric: str,
    score: float,
    score_model: Callable[[Any], float],
    higher_is_better: bool = True,
) -> Promotion:
    """Compare ``version`` (its ``score``) with the champion scored by ``score_model`` on the same
    held-out set, move the alias, and tag the version with the decision."""
    champion = current_champion(client, model_name)
    champion_score: float | None = None
    if champion is None:
        alias, reason = CHAMPION, "no champion yet"
    elif champion == version:
        alias, reason = CHAMPION, "already champion"
    else:
        try:
            champion_score = float(
                score_model(mlflow.sklearn.load_model(f"models:/{model_name}/{champion}"))
            )
        except (KeyError, ValueError) as exc:
            alias = CHALLENGER
            reason = f"champion v{champion} cannot be scored on this set ({exc}); promote by hand"
        else:
            better = score > champion_score if higher_is_better else score < champion_score
            alias = CHAMPION if better else CHALLENGER
            verdict = "beats" if better else "does not beat"
            reason = f"{metric} {score:.4f} {verdict} champion v{champion} ({champion_score:.4f})"
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promotion", reason)
    return Promotion(model_name, version, alias, metric, score, champion, champion_score, reason)
