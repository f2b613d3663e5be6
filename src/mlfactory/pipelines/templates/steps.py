"""The steps of the classification templates, bound to a :class:`Plan`.

load -> drift (the new rows against the last training data) -> split (holdout) or snapshot
(fixed evaluation set) -> train -> evaluate -> promote -> predict (every item without a
prediction from the champion) -> summary. The step that loads may be a pipeline's own: the
others read the data set it loaded into from the output of the step named ``load``.

Heavy libraries are imported inside the steps: Airflow imports the pipelines when it parses DAGs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlfactory.orchestration import Context
from mlfactory.pipelines.common import (
    log_snapshots,
    promote_version,
    publish_summary,
    record_drift,
    registered_output,
    take_snapshots,
    training_run,
)
from mlfactory.pipelines.templates.plan import Plan, derived_dataset

if TYPE_CHECKING:
    import pandas as pd

LOAD = "load"


class ClassificationSteps:
    """Each method is a step; ``data`` names the step that holds the data out."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.data = "split" if plan.holdout else "snapshot"

    # -- data ------------------------------------------------------------------------------

    def load(self, ctx: Context) -> dict[str, Any]:
        """Load the declared source (or the run's ``source`` file, into a data set of its own)
        as one audited batch, after checking its columns and types against the declaration."""
        from mlfactory.ingest.declared import load_declared
        from mlfactory.ingest.sources import readable_source

        source = ctx.params.source  # type: ignore[attr-defined]
        path = readable_source(ctx.settings, Path(source)) if source else None
        into = derived_dataset(self.plan.dataset.name, path) if path else None
        result = load_declared(
            ctx.sessions, ctx.settings, self.plan.dataset, path=path, into=into, run_id=ctx.run_id
        )
        return {**result.as_dict(), "dataset": into or self.plan.dataset.name}

    def drift(self, ctx: Context) -> dict[str, Any]:
        """Compare the rows this load brought in with the data the last model trained on."""
        from mlfactory.datasets.recent import batch_items
        from mlfactory.datasets.snapshots import latest_training_snapshot, load_snapshot

        loaded = ctx.output_of(LOAD)
        dataset, plan = loaded["dataset"], self.plan
        snapshot = latest_training_snapshot(ctx.sessions, dataset, not_of_run=ctx.run_id)
        if snapshot is None:
            return {"checked": False, "reason": "no earlier training data to compare with"}
        if loaded.get("batch_id") is None:
            return {"checked": False, "reason": "nothing was loaded"}
        current = batch_items(ctx.sessions, dataset, loaded["batch_id"])
        minimum = plan.declaration.drift_min_rows
        if len(current) < minimum:
            reason = f"{len(current)} new or changed rows, fewer than {minimum}"
            return {"checked": False, "reason": reason}
        from mlfactory.monitoring import compare

        reference = load_snapshot(snapshot).drop_duplicates("key")  # undo the oversampling
        columns = plan.inputs(ctx.params)
        sides = [_watched(plan, frame, columns) for frame in (reference, current)]
        report = compare(
            sides[0],
            sides[1],
            categorical=[
                name
                for name in columns
                if plan.dataset.columns[name].type in ("category", "boolean", "file")
            ],
            context={"dataset": dataset, "snapshot": snapshot.digest[:12]},
        )
        verdict = record_drift(
            ctx,
            report,
            dataset=dataset,
            snapshot_id=snapshot.id,
            model_name=ctx.params.model_name,  # type: ignore[attr-defined]
            title=f"{plan.name} drift report",
        )
        return {**verdict, "reference_rows": len(reference), "current_rows": len(current)}

    def split(self, ctx: Context) -> dict[str, Any]:
        """A snapshot of the labelled rows (in the order they arrived), split seeded and
        stratified into a training and a held-out part."""
        import pandas as pd
        from sklearn.model_selection import train_test_split

        from mlfactory.datasets.frames import labels
        from mlfactory.datasets.snapshots import load_snapshot, oversample, training_snapshot

        params = ctx.params
        info = training_snapshot(
            ctx.sessions,
            ctx.output_of(LOAD)["dataset"],
            ctx.artifact_dir,
            balance=False,
            seed=params.seed,  # type: ignore[attr-defined]
            run_id=ctx.run_id,
            hold_out=False,
            order="arrival",
        )
        frame = load_snapshot(info)
        train, test = train_test_split(
            frame,
            test_size=params.test_size,  # type: ignore[attr-defined]
            random_state=params.seed,  # type: ignore[attr-defined]
            stratify=labels(self.plan.dataset, frame["label"]),
        )
        balanced = None
        if params.balance:  # type: ignore[attr-defined]
            picked = oversample(train["label"].astype(str).tolist(), params.seed)  # type: ignore[attr-defined]
            train = train.iloc[picked]
            balanced = _counts(train)
        parts = {}
        for kind, part in (("training", train), ("evaluation", test)):
            path = ctx.artifact_dir / f"{kind}.parquet"
            pd.DataFrame(part).to_parquet(path)
            parts[kind] = {"path": str(path), "row_count": len(part), "class_counts": _counts(part)}
        parts["training"]["balanced_counts"] = balanced
        return {**parts, "snapshot": {"id": info.id, "digest": info.digest, "rows": info.row_count}}

    def snapshot(self, ctx: Context) -> dict[str, Any]:
        """The data set's evaluation set (carved the first time, never trained on) and this
        run's training snapshot (class-balanced when asked)."""
        params = ctx.params
        return take_snapshots(
            ctx,
            ctx.output_of(LOAD)["dataset"],
            evaluation_fraction=params.evaluation_fraction,  # type: ignore[attr-defined]
            balance=params.balance,  # type: ignore[attr-defined]
            seed=params.seed,  # type: ignore[attr-defined]
        )

    # -- model ------------------------------------------------------------------------------

    def train(self, ctx: Context) -> dict[str, Any]:
        """Fit the template's model on the training part; log it, its parameters and its
        training data to MLflow and register a new version."""
        import mlflow
        import pandas as pd

        from mlfactory.datasets.frames import labels
        from mlfactory.training.classifiers import classifier
        from mlfactory.training.datasets import log_training_data
        from mlfactory.training.registry import CLOUDPICKLE, SKOPS, log_and_register

        plan, params, data = self.plan, ctx.params, ctx.output_of(self.data)
        frame = pd.read_parquet(data["training"]["path"])
        columns = plan.inputs(params)
        features, target = plan.frame(frame, columns), labels(plan.dataset, frame["label"])
        inputs = plan.model_inputs(columns)
        choice = plan.model_choice(params)
        model = classifier(inputs, choice, text_features=plan.declaration.text_features)
        model.fit(features, target)
        train_accuracy = float(model.score(features, target))
        with training_run(ctx):
            mlflow.log_params(
                {
                    "template": plan.declaration.template,
                    "dataset": ctx.output_of(LOAD)["dataset"],
                    "model": choice.kind,
                    "features": ",".join(columns),
                    "C": choice.c,
                    "max_iter": choice.max_iter,
                    "class_weight": choice.class_weight,
                    "random_state": choice.seed,
                    "evaluation": plan.declaration.evaluation.method,
                    "train_rows": len(frame),
                    **{
                        name: value
                        for name, value in params.model_dump().items()
                        if name in ("test_size", "evaluation_fraction", "seed", "balance")
                    },
                }
            )
            if plan.holdout:
                snapshot = data["snapshot"]
                log_training_data(
                    frame,
                    name=f"{plan.dataset.name}-training-{snapshot['digest'][:12]}",
                    digest=snapshot["digest"],
                    targets="label",
                    class_counts=data["training"]["class_counts"],
                    balanced_counts=data["training"]["balanced_counts"],
                    context="training",
                    source=data["training"]["path"],
                )
            else:
                log_snapshots(plan.dataset.name, data)
            # skops reads back only the types it is told to trust: plain numbers only.
            plain = not (inputs.categories or inputs.dates or inputs.texts)
            registered = log_and_register(
                model,
                features,
                params.model_name,  # type: ignore[attr-defined]
                serialization_format=SKOPS if plain else CLOUDPICKLE,
            )
        return registered_output(ctx, registered, train_accuracy=train_accuracy)

    def evaluate(self, ctx: Context) -> dict[str, Any]:
        """Scores on the held-out part (binary metrics for two classes, F1 averages for more),
        a confusion matrix (and a ROC curve), logged to the training run."""
        from mlfactory.training.evaluate import (
            classification_metrics,
            confusion_matrix_figure,
            metric_score,
            per_class_report,
            roc_figure,
        )
        from mlfactory.training.registry import load_model
        from mlfactory.training.tracking import log_to_run, use_tracking

        use_tracking(ctx.settings)
        trained = ctx.output_of("train")
        model = load_model(trained["model_uri"])
        features, truth = self._held_out(ctx, model)
        positive = self._positive()
        if positive is None:
            positive = model.classes_[-1]
        metrics, predicted, scores = classification_metrics(model, features, truth, positive)
        metric = self._metric(len(model.classes_))
        if metric not in metrics:
            metrics[metric] = metric_score(metric, model, features, truth, positive)
        title = f"{ctx.pipeline} v{trained['model_version']} ({len(truth)} held out)"
        figures = {"confusion_matrix.png": confusion_matrix_figure(truth, predicted, title)}
        if scores is not None:
            is_positive = [value == positive for value in truth]
            figures["roc_curve.png"] = roc_figure(is_positive, scores, title)
        log_to_run(
            ctx.settings,
            trained["mlflow_run_id"],
            metrics={f"test_{name}": value for name, value in metrics.items()},
            dicts={"per_class_report.json": per_class_report(truth, predicted)},
            figures=figures,
        )
        ctx.update_run(metrics=metrics)
        return {**metrics, "evaluation_rows": len(truth)}

    def promote(self, ctx: Context) -> dict[str, Any]:
        """Champion only if the new version beats the champion on the promotion metric, both
        scored on this run's held-out part."""
        from mlfactory.training.evaluate import metric_score

        trained, evaluated = ctx.output_of("train"), ctx.output_of("evaluate")
        positive = self._positive()

        def score(model: Any) -> float:
            features, truth = self._held_out(ctx, model)
            return metric_score(metric, model, features, truth, positive)

        metric = self._metric(None, evaluated)
        return promote_version(
            ctx,
            ctx.params.model_name,  # type: ignore[attr-defined]
            trained["model_version"],
            metric=metric,
            score=evaluated[metric],
            score_model=score,
        )

    def predict(self, ctx: Context) -> dict[str, Any]:
        """A prediction from the champion for every item of the data set that has none from
        its version, claimed in batches so several workers can share the work."""
        from mlfactory.inference.batch import predict_pending

        result = predict_pending(
            ctx.sessions,
            ctx.settings,
            ctx.output_of(LOAD)["dataset"],
            ctx.params.model_name,  # type: ignore[attr-defined]
            to_features=self.plan.frame,
            batch_size=ctx.params.batch_size,  # type: ignore[attr-defined]
            run_id=ctx.run_id,
        )
        return asdict(result)

    def summary(self, ctx: Context) -> dict[str, Any]:
        """What the run loaded, held out, trained, scored, promoted and predicted."""
        loaded, data = ctx.output_of(LOAD), ctx.output_of(self.data)
        trained, evaluated = ctx.output_of("train"), ctx.output_of("evaluate")
        metric = self._metric(None, evaluated)
        report = {
            "dataset": loaded["dataset"],
            "rows_loaded": loaded.get("rows_seen", 0),
            "rows_rejected": loaded.get("rows_rejected", 0),
            "rows_deleted": loaded.get("rows_deleted", 0),
            "samples": {
                "train": data["training"]["row_count"],
                "test": data["evaluation"]["row_count"],
            },
            "class_counts": {
                "train": data["training"]["class_counts"],
                "test": data["evaluation"]["class_counts"],
            },
            "train_score": trained["train_accuracy"],
            "test_score": evaluated["accuracy"],
            "difference": trained["train_accuracy"] - evaluated["accuracy"],
            "metric": {"name": metric, "value": evaluated[metric]},
            "model": {
                "name": ctx.params.model_name,  # type: ignore[attr-defined]
                "version": trained["model_version"],
            },
            "alias": ctx.output_of("promote")["alias"],
            "predicted": ctx.output_of("predict")["predicted"],
            "drift": _drift_verdict(ctx.output_of("drift")),
        }
        return publish_summary(ctx, report, trained["mlflow_run_id"])

    # -- helpers -----------------------------------------------------------------------------

    def _held_out(self, ctx: Context, model: Any) -> tuple[pd.DataFrame, list[Any]]:
        """The held-out rows as ``model`` takes them (its own input columns), and their labels."""
        import pandas as pd

        from mlfactory.datasets.frames import labels

        frame = pd.read_parquet(ctx.output_of(self.data)["evaluation"]["path"])
        columns = list(getattr(model, "feature_names_in_", self.plan.inputs(ctx.params)))
        return self.plan.frame(frame, columns), labels(self.plan.dataset, frame["label"])

    def _positive(self) -> Any:
        label = self.plan.dataset.label
        return label.positive if label else None

    def _metric(self, classes: int | None, evaluated: dict[str, Any] | None = None) -> str:
        """The declared promotion metric, else ROC AUC for two classes and macro F1 for more."""
        if self.plan.declaration.metric:
            return self.plan.declaration.metric
        if classes is None:
            assert evaluated is not None
            return "roc_auc" if "roc_auc" in evaluated else "macro_f1"
        return "roc_auc" if classes == 2 else "macro_f1"


def _counts(frame: Any) -> dict[str, int]:
    counts = frame["label"].astype(str).value_counts().sort_index()
    return {str(label): int(count) for label, count in counts.items()}


def _watched(plan: Plan, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The compared columns of one side of a drift check: the model's tabular inputs (dates as
    days since 1970) and the lengths of its texts."""
    import pandas as pd

    from mlfactory.monitoring import text_length_features

    model = plan.frame(frame, columns)
    watched = {}
    for name in columns:
        kind = plan.dataset.columns[name].type
        if kind == "date":
            watched[name] = (model[name] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1)
        elif kind != "text":
            watched[name] = model[name]
    texts = [name for name in columns if plan.dataset.columns[name].type == "text"]
    lengths = text_length_features(model, texts) if texts else pd.DataFrame(index=model.index)
    return pd.concat([pd.DataFrame(watched, index=model.index), lengths], axis=1)


def _drift_verdict(output: dict[str, Any]) -> dict[str, Any]:
    if not output.get("checked"):
        return {"checked": False, "reason": output.get("reason")}
    return {"checked": True, "severity": output["severity"], "report": output["drift_report_id"]}
