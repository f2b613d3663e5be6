"""Snapshots: as-of replay, the fixed evaluation set, balanced training sets, digests, MLflow."""

from __future__ import annotations

import csv
import threading
import uuid
from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select

from mlfactory.datasets.snapshots import (
    SnapshotInfo,
    carve_evaluation_set,
    class_count_figure,
    evaluation_snapshot,
    items_as_of,
    load_snapshot,
    training_snapshot,
)
from mlfactory.errors import UserError
from mlfactory.ingest.loader import Record, load_batch
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, ItemHistory, Snapshot, session_factory, utcnow
from mlfactory.training.datasets import log_training_data
from mlfactory.training.tracking import experiment_id

SYNTH = "synthetic"
ADS = "ads"
TARGET = "Clicked on Ad"
CLASS_SIZES = {"alpha": 60, "beta": 25, "gamma": 10, "solo": 1}


def synthetic_records(start: int = 0, sizes: dict[str, int] = CLASS_SIZES) -> list[Record]:
    """An imbalanced set whose data has what JSON columns make hard: floats, booleans, nulls,
    unicode, nested values, a field named like a reserved column, a field of mixed types."""
    records = []
    number = start
    for label, size in sizes.items():
        for _ in range(size):
            data = {
                "x": number * 0.1,
                "n": number,
                "flag": number % 2 == 0,
                "text": f"élément n°{number}",
                "tags": ["a", str(number % 3)],
                "nested": {"z": 1, "a": [number, None]},
                "maybe": None if number % 4 else number,
                "mixed": number if number % 5 else f"s{number}",
                "label": f"raw-{label}",
            }
            records.append(Record(key=f"k{number:04d}", data=data, label=label))
            number += 1
    return records


def advertising_records(path: Path) -> list[Record]:
    """The real advertising rows, made imbalanced: every click row of three is kept."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    return [
        Record(key=f"ad-{line}", data=row, label=row[TARGET])
        for line, row in enumerate(rows, start=2)
        if row[TARGET] == "0" or line % 3 == 0
    ]


def keys(frame: pd.DataFrame) -> set[str]:
    return set(frame["key"])


def eval_keys(sessions, dataset: str) -> set[str]:
    with sessions() as session:
        row = session.scalar(
            select(Snapshot).where(Snapshot.dataset == dataset, Snapshot.kind == "evaluation")
        )
        return set(row.meta["keys"])


# ---------------------------------------------------------------------------------------------
# As-of replay


def test_as_of_replay_returns_each_item_as_it_was(sessions) -> None:
    first = load_batch(sessions, SYNTH, synthetic_records())
    changed = Record(key="k0003", data={"x": 99.5, "note": "new field"}, label="beta")
    second = load_batch(
        sessions,
        SYNTH,
        [
            *[r for r in synthetic_records() if r.key != "k0003"],
            changed,
            Record(key="k9999", data={"x": 1}, label="alpha"),
        ],
    )
    assert (second.rows_updated, second.rows_inserted) == (1, 1)

    old = items_as_of(sessions, SYNTH, first.batch_id).set_index("key")
    new = items_as_of(sessions, SYNTH).set_index("key")
    assert len(old) == sum(CLASS_SIZES.values()) and "k9999" not in old.index
    assert (old.loc["k0003", "label"], old.loc["k0003", "x"]) == ("alpha", pytest.approx(0.3))
    assert "note" not in old.columns  # a field that came later
    assert (new.loc["k0003", "label"], new.loc["k0003", "x"], new.loc["k0003", "note"]) == (
        "beta",
        99.5,
        "new field",
    )
    assert new.loc["k9999", "label"] == "alpha"
    # the latest state is the items table itself
    with sessions() as session:
        current = dict(
            session.execute(select(Item.key, Item.label).where(Item.dataset == SYNTH)).all()
        )
    assert dict(new["label"]) == current

    # columns: key, label, then data fields by name; reserved names moved aside; mixed types
    # and nested values as canonical JSON text
    assert list(items_as_of(sessions, SYNTH, first.batch_id).columns) == [
        "key",
        "label",
        "data.label",
        "flag",
        "maybe",
        "mixed",
        "n",
        "nested",
        "tags",
        "text",
        "x",
    ]
    assert old.loc["k0003", "data.label"] == "raw-alpha"
    assert old.loc["k0003", "nested"] == '{"a":[3,null],"z":1}'
    assert old.loc["k0005", "mixed"] == '"s5"' and old.loc["k0006", "mixed"] == "6"
    assert list(items_as_of(sessions, SYNTH)["key"]) == sorted(current)


def test_as_of_replay_drops_deleted_items_and_refuses_foreign_batches(sessions) -> None:
    first = load_batch(sessions, SYNTH, synthetic_records())
    other = load_batch(sessions, "other", [Record(key="a", data={}, label="x")])
    with sessions.begin() as session:  # the loader never deletes yet: write what a delete is
        batch = DataLoad(dataset=SYNTH, name="delete", mode="full", status="completed")
        session.add(batch)
        session.flush()
        item = session.scalar(select(Item).where(Item.dataset == SYNTH, Item.key == "k0000"))
        session.add(
            ItemHistory(
                item_id=item.id,
                batch_id=batch.id,
                operation="delete",
                before={"data": item.data, "label": item.label},
                after=None,
                changed_at=utcnow(),
            )
        )
        deleted_in = batch.id
    assert "k0000" in keys(items_as_of(sessions, SYNTH, first.batch_id))
    assert "k0000" not in keys(items_as_of(sessions, SYNTH, deleted_in))
    assert "k0000" not in keys(items_as_of(sessions, SYNTH))
    with pytest.raises(UserError, match="not a load batch"):
        items_as_of(sessions, SYNTH, other.batch_id)
    with pytest.raises(UserError, match="not a load batch"):
        items_as_of(sessions, SYNTH, 10_000)
    assert items_as_of(sessions, "never-loaded").empty


# ---------------------------------------------------------------------------------------------
# Evaluation set


def test_evaluation_set_is_carved_once_and_never_trained_on(sessions, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no evaluation set"):
        training_snapshot(sessions, SYNTH, tmp_path)
    first_load = load_batch(sessions, SYNTH, synthetic_records())
    evaluation = carve_evaluation_set(sessions, SYNTH, tmp_path / "a", fraction=0.2, seed=7)
    # stratified: 20 % of each class; the single-item class stays in training
    assert evaluation.kind == "evaluation" and evaluation.balanced_counts is None
    assert evaluation.class_counts == {"alpha": 12, "beta": 5, "gamma": 2}
    held_out = eval_keys(sessions, SYNTH)
    frame = load_snapshot(evaluation)
    assert keys(frame) == held_out and len(frame) == evaluation.row_count == 19

    # more data, some of it changing held-out items; other arguments: still the same set
    changed = sorted(held_out)[:3]
    update = [
        Record(key=r.key, data={**r.data, "x": -1.0}, label=r.label)
        for r in synthetic_records()
        if r.key in changed
    ]
    load_batch(sessions, SYNTH, [*update, *synthetic_records(start=500)])
    again = carve_evaluation_set(sessions, SYNTH, tmp_path / "b", fraction=0.5, seed=1)
    assert again == evaluation
    assert evaluation_snapshot(sessions, SYNTH) == evaluation
    assert eval_keys(sessions, SYNTH) == held_out
    assert load_snapshot(again).equals(frame)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 1

    for as_of in (first_load.batch_id, None):
        for balance in (False, True):
            train = training_snapshot(
                sessions, SYNTH, tmp_path / "train", as_of_batch_id=as_of, balance=balance
            )
            trained_on = keys(load_snapshot(train))
            assert not trained_on & held_out
            expected = keys(items_as_of(sessions, SYNTH, as_of)) - held_out
            assert trained_on == expected  # everything else, the single-item class included
            assert "k0095" in trained_on  # the "solo" item


def test_concurrent_first_carves_make_one_evaluation_set(sessions, tmp_path: Path) -> None:
    load_batch(sessions, SYNTH, synthetic_records())
    barrier = threading.Barrier(4)
    results: list[SnapshotInfo] = []

    def carve(seed: int) -> None:
        barrier.wait()
        results.append(carve_evaluation_set(sessions, SYNTH, tmp_path / str(seed), seed=seed))

    threads = [threading.Thread(target=carve, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len({info.id for info in results}) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 1


# ---------------------------------------------------------------------------------------------
# Training set: balancing, digest, reuse


def test_balancing_equalises_classes_and_is_seeded(sessions, tmp_path: Path) -> None:
    load_batch(sessions, SYNTH, synthetic_records())
    carve_evaluation_set(sessions, SYNTH, tmp_path, seed=7)
    held_out = eval_keys(sessions, SYNTH)

    balanced = training_snapshot(sessions, SYNTH, tmp_path, balance=True, seed=1)
    expected_before = Counter(
        r.label for r in synthetic_records() if r.key not in held_out
    )  # alpha 48, beta 20, gamma 8, solo 1
    assert balanced.class_counts == dict(sorted(expected_before.items()))
    majority = max(expected_before.values())
    assert balanced.balanced_counts == dict.fromkeys(sorted(expected_before), majority)
    assert balanced.row_count == majority * len(expected_before)
    frame = load_snapshot(balanced)
    assert dict(Counter(frame["label"])) == balanced.balanced_counts
    assert keys(frame) == {r.key for r in synthetic_records()} - held_out  # every row kept
    assert (frame["key"] == "k0095").sum() == majority  # the single item, drawn up to majority
    assert balanced.seed == 1 and balanced.as_of_batch_id is not None

    same = training_snapshot(sessions, SYNTH, tmp_path / "elsewhere", balance=True, seed=1)
    assert same == balanced  # same inputs: the same row, reused
    other_seed = training_snapshot(sessions, SYNTH, tmp_path, balance=True, seed=2)
    assert other_seed.digest != balanced.digest and other_seed.id != balanced.id
    assert other_seed.balanced_counts == balanced.balanced_counts
    assert not load_snapshot(other_seed).equals(frame)  # other rows drawn

    plain = training_snapshot(sessions, SYNTH, tmp_path, balance=False, seed=1)
    assert plain.balanced_counts is None and plain.seed is None
    assert plain.row_count == sum(expected_before.values())
    assert plain.digest not in (balanced.digest, other_seed.digest)
    # without balancing the seed plays no part
    assert training_snapshot(sessions, SYNTH, tmp_path, balance=False, seed=99) == plain


def test_digest_follows_content_not_batches(sessions, tmp_path: Path) -> None:
    first = load_batch(sessions, SYNTH, synthetic_records())
    carve_evaluation_set(sessions, SYNTH, tmp_path)
    before = training_snapshot(sessions, SYNTH, tmp_path, seed=3)

    nothing = load_batch(sessions, SYNTH, synthetic_records())  # a batch that changes nothing
    assert nothing.rows_unchanged == sum(CLASS_SIZES.values())
    same_content = training_snapshot(sessions, SYNTH, tmp_path, seed=3)
    assert same_content.digest == before.digest
    assert same_content.id != before.id  # its own row: it is as of another batch
    assert (before.as_of_batch_id, same_content.as_of_batch_id) == (
        first.batch_id,
        nothing.batch_id,
    )

    held_out = eval_keys(sessions, SYNTH)
    victim = next(r for r in synthetic_records() if r.key not in held_out)
    load_batch(
        sessions, SYNTH, [Record(key=victim.key, data={**victim.data, "x": 1e6}, label="alpha")]
    )
    changed = training_snapshot(sessions, SYNTH, tmp_path, seed=3)
    assert changed.digest != before.digest
    # replaying the old batch gives the old digest back
    replayed = training_snapshot(sessions, SYNTH, tmp_path, as_of_batch_id=first.batch_id, seed=3)
    assert replayed == before


def test_a_missing_or_foreign_parquet_file_is_noticed(sessions, tmp_path: Path) -> None:
    load_batch(sessions, SYNTH, synthetic_records())
    carve_evaluation_set(sessions, SYNTH, tmp_path)
    one = training_snapshot(sessions, SYNTH, tmp_path, seed=1)
    two = training_snapshot(sessions, SYNTH, tmp_path, seed=2)
    rows = load_snapshot(one)

    two.path.replace(one.path)  # one's file now holds two's rows
    with pytest.raises(UserError, match="does not hold snapshot"):
        load_snapshot(one)
    one.path.unlink()
    with pytest.raises(UserError, match="missing"):
        load_snapshot(one)
    # asked for again, the snapshot's file is written anew (same row, same rows)
    again = training_snapshot(sessions, SYNTH, tmp_path / "new", seed=1)
    assert (again.id, again.digest) == (one.id, one.digest)
    assert again.path.parent == (tmp_path / "new").resolve()
    assert load_snapshot(again).equals(rows)


def test_parquet_holds_the_same_rows(sessions, tmp_path: Path, advertising_csv: Path) -> None:
    records = advertising_records(advertising_csv)
    load_batch(sessions, ADS, records)
    evaluation = carve_evaluation_set(sessions, ADS, tmp_path)
    train = training_snapshot(sessions, ADS, tmp_path, balance=False)

    expected = items_as_of(sessions, ADS)
    expected = expected[~expected["key"].isin(eval_keys(sessions, ADS))].reset_index(drop=True)
    loaded = load_snapshot(train)
    pd.testing.assert_frame_equal(loaded, expected)
    # a reader without mlfactory sees the same
    pd.testing.assert_frame_equal(pd.read_parquet(train.path), expected)
    assert train.row_count + evaluation.row_count == len(records)
    source = {r.key: r for r in records}
    for row in loaded.head(50).itertuples(index=False):
        record = source[row.key]
        assert row.label == record.label and row.Age == record.data["Age"]


def test_digest_is_the_same_on_both_backends(
    sessions, store_url: str, tmp_path: Path, advertising_csv: Path
) -> None:
    """The same loads on this test's backend and on a separate SQLite store give the same
    evaluation keys and the same digests (on the PostgreSQL variant: JSONB against JSON)."""
    reference = session_factory(f"sqlite:///{tmp_path / 'reference.db'}")
    results = []
    for store in (sessions, reference):
        for dataset, records in (
            (SYNTH, synthetic_records()),
            (ADS, advertising_records(advertising_csv)),
        ):
            load_batch(store, dataset, records)
            evaluation = carve_evaluation_set(store, dataset, tmp_path / str(id(store)))
            results.append(
                (
                    eval_keys(store, dataset),
                    evaluation.digest,
                    training_snapshot(store, dataset, tmp_path, balance=True, seed=5).digest,
                    training_snapshot(store, dataset, tmp_path, balance=False).digest,
                )
            )
    half = len(results) // 2
    assert results[:half] == results[half:]
    assert len({digest for result in results for digest in result[1:]}) == 6
    # the frames read back are equal too
    ads = [items_as_of(store, ADS) for store in (sessions, reference)]
    pd.testing.assert_frame_equal(ads[0], ads[1])
    synth = [items_as_of(store, SYNTH) for store in (sessions, reference)]
    pd.testing.assert_frame_equal(synth[0], synth[1])


# ---------------------------------------------------------------------------------------------
# Plot and MLflow


def test_class_count_figure_has_a_bar_per_class() -> None:
    figure = class_count_figure({"a": 5, "b": 2}, {"a": 5, "b": 5}, "demo")
    before, after = figure.axes
    assert [bar.get_height() for bar in before.patches] == [5, 2]
    assert [bar.get_height() for bar in after.patches] == [5, 5]
    single = class_count_figure({"a": 5, "b": 2}, None, "demo")
    assert len(single.axes) == 1


def test_snapshot_is_logged_as_a_dataset_input(
    sessions, settings: Settings, tmp_path: Path
) -> None:
    load_batch(sessions, SYNTH, synthetic_records())
    carve_evaluation_set(sessions, SYNTH, tmp_path)
    info = training_snapshot(sessions, SYNTH, tmp_path, balance=True, seed=4)
    frame = load_snapshot(info)
    name = f"{SYNTH}-training"
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_training_data(
            frame,
            name=name,
            digest=info.digest,
            targets="label",
            class_counts=info.class_counts,
            balanced_counts=info.balanced_counts,
        )

    experiment = experiment_id(f"snapshots-{uuid.uuid4().hex[:8]}", settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        log_training_data(
            frame,
            name=name,
            digest=info.digest,
            targets="label",
            class_counts=info.class_counts,
            balanced_counts=info.balanced_counts,
            figure=class_count_figure(info.class_counts, info.balanced_counts, name),
            source=info.path,
        )

    client = MlflowClient(settings.mlflow_tracking_uri)
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset, tags = inputs[0].dataset, {tag.key: tag.value for tag in inputs[0].tags}
    assert dataset.name == name
    assert dataset.digest == info.digest[:32]
    assert str(info.path) in dataset.source
    assert tags["mlflow.data.context"] == "training"
    assert tags["mlfactory.digest"] == info.digest
    assert tags["mlfactory.rows"] == str(info.row_count)
    for label, count in info.class_counts.items():
        assert tags[f"class_count.{label}"] == str(count)
        assert tags[f"balanced_count.{label}"] == str(info.balanced_counts[label])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, f"datasets/{name}")}
    assert artifacts == {f"datasets/{name}/class_counts.json", f"datasets/{name}/class_counts.png"}
    report = mlflow.artifacts.load_dict(
        f"{run.info.artifact_uri}/datasets/{name}/class_counts.json"
    )
    assert report["digest"] == info.digest
    assert report["class_counts"] == info.class_counts
    assert report["balanced_counts"] == info.balanced_counts
