"""The loader: one audited batch per load, history for every change, nothing for no change;
fraction and watermark modes; the same counts on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mlfactory.ingest.csv_reader import BadRow, read_csv_rows
from mlfactory.ingest.loader import (
    Record,
    completed_percentage,
    content_hash,
    current_watermark,
    load_batch,
    ordering_value,
    records_from_csv,
)
from mlfactory.store import DataLoad, Item, ItemHistory, Rejection

TARGET = "Clicked on Ad"
# A watermark load of {key: version} given as JSON, in a process of its own.
LOAD_IN_A_NEW_PROCESS = """
import json, sys
from mlfactory.ingest.loader import Record, load_batch
from mlfactory.store import session_factory
rows = [Record(key, {"version": version}) for key, version in json.loads(sys.argv[2]).items()]
result = load_batch(
    session_factory(sys.argv[1]), "versions", rows, mode="watermark", watermark_field="version"
)
print(json.dumps(result.as_dict()))
"""


def load_file(sessions, path: Path, **kwargs):
    rows = records_from_csv(read_csv_rows(path), label_field=TARGET)
    return load_batch(sessions, "ads", rows, source=str(path), **kwargs)


def count(sessions, what, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(what).where(*where))


def keys_of(sessions, dataset: str = "ads") -> list[str]:
    with sessions() as session:
        return session.scalars(select(Item.key).where(Item.dataset == dataset)).all()


def stamped(updated: dict[str, str]) -> list[Record]:
    """Records as an API gives them: a key and the time each was last updated."""
    return [Record(key, {"id": key, "updated": value}) for key, value in updated.items()]


def load_stamped(sessions, updated: dict[str, str]):
    return load_batch(
        sessions, "papers", stamped(updated), mode="watermark", watermark_field="updated"
    )


def test_first_load_inserts_every_row_with_history(sessions, advertising_csv: Path) -> None:
    result = load_file(sessions, advertising_csv)
    assert (result.name, result.rows_seen, result.rows_inserted, result.rows_rejected) == (
        "initial",
        1000,
        1000,
        0,
    )
    assert count(sessions, Item, Item.dataset == "ads") == 1000
    assert (
        count(
            sessions,
            ItemHistory,
            ItemHistory.operation == "insert",
            ItemHistory.batch_id == result.batch_id,
        )
        == 1000
    )
    with sessions() as session:
        batch = session.get_one(DataLoad, result.batch_id)
        assert (batch.status, batch.rows_inserted, batch.mode) == ("completed", 1000, "full")
        first = session.scalar(select(Item).where(Item.key == "2"))
        assert first.label == "0" and first.data["Age"] == "35"  # line 2 of the file
        assert batch.started_at <= first.created_at <= batch.ended_at  # aware UTC, as written
        history = session.scalar(select(ItemHistory).where(ItemHistory.item_id == first.id))
        assert (history.before, history.after) == (None, {"data": first.data, "label": "0"})
        assert history.changed_at == first.created_at
        keys = session.scalars(select(Item.key).order_by(Item.id)).all()
    assert keys == [str(line) for line in range(2, 1002)]  # ids follow the source's order


def test_reloading_unchanged_data_writes_nothing(sessions, advertising_csv: Path) -> None:
    load_file(sessions, advertising_csv)
    second = load_file(sessions, advertising_csv)
    assert (second.name, second.rows_unchanged, second.rows_inserted, second.rows_updated) == (
        "load_2",
        1000,
        0,
        0,
    )
    assert count(sessions, ItemHistory) == 1000
    assert count(sessions, ItemHistory, ItemHistory.batch_id == second.batch_id) == 0


def test_changing_ten_rows_writes_exactly_ten_updates(
    sessions, advertising_csv: Path, tmp_path: Path
) -> None:
    load_file(sessions, advertising_csv)
    lines = advertising_csv.read_text().splitlines()
    changed = list(range(5, 105, 10))  # ten data lines (0-based index in the file)
    for index in changed:
        fields = lines[index].split(",")
        fields[1] = str(int(fields[1]) + 1)  # one year older
        lines[index] = ",".join(fields)
    edited = tmp_path / "edited.csv"
    edited.write_text("\n".join(lines) + "\n")

    result = load_file(sessions, edited)
    assert (result.rows_updated, result.rows_unchanged, result.rows_inserted) == (10, 990, 0)
    with sessions() as session:
        updates = session.scalars(
            select(ItemHistory).where(ItemHistory.operation == "update")
        ).all()
        keys = session.scalars(
            select(Item.key).where(Item.id.in_([u.item_id for u in updates]))
        ).all()
    assert len(updates) == 10
    assert {u.batch_id for u in updates} == {result.batch_id}
    assert sorted(int(key) for key in keys) == [index + 1 for index in changed]
    for update in updates:
        before, after = int(update.before["data"]["Age"]), int(update.after["data"]["Age"])
        assert after == before + 1
    assert load_file(sessions, edited).rows_updated == 0  # the same batch again: no change


def test_bad_rows_are_rejected_with_their_reason_and_line(sessions, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_bytes(
        b"a,b," + TARGET.encode() + b"\n"
        b"1,x,0\n"
        b"2,\xff\xfe,1\n"
        b"3,y\n"
        b"1,z,1\n"  # key is the line, so a repeated value is fine; same line key cannot repeat
    )
    result = load_file(sessions, source)
    assert (result.rows_inserted, result.rows_rejected, result.rows_seen) == (2, 2, 4)
    with sessions() as session:
        rejected = session.execute(
            select(Rejection.line, Rejection.reason, Rejection.stage).order_by(Rejection.line)
        ).all()
    assert rejected[0].line == 3 and "not valid UTF-8" in rejected[0].reason
    assert rejected[1].line == 4 and "expected 3 fields, got 2" in rejected[1].reason
    assert {row.stage for row in rejected} == {"load"}


def test_a_failing_source_marks_the_batch_failed_and_keeps_stored_items(
    sessions, advertising_csv: Path
) -> None:
    load_file(sessions, advertising_csv)

    def broken():
        yield from records_from_csv(read_csv_rows(advertising_csv), label_field=TARGET)
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        load_batch(sessions, "ads", broken())
    with sessions() as session:
        statuses = session.execute(
            select(DataLoad.name, DataLoad.status).order_by(DataLoad.id)
        ).all()
        failed_error = session.scalar(select(DataLoad.error).where(DataLoad.status == "failed"))
    assert statuses == [("initial", "completed"), ("load_2", "failed")]
    assert "disk went away" in failed_error
    assert count(sessions, Item) == 1000
    assert count(sessions, ItemHistory) == 1000


def test_content_hash_is_that_of_the_sorted_json_of_data_and_label() -> None:
    """Hashes already in a store keep matching: the formula must not drift."""
    data = {"b": "é", "a": 1}
    canonical = json.dumps([data, "x"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert content_hash(data, "x") == hashlib.sha256(canonical.encode()).hexdigest()
    assert content_hash(data, None) != content_hash(data, "x")


def test_batches_carry_a_given_name_and_metadata(sessions, advertising_csv: Path) -> None:
    week = load_file(sessions, advertising_csv, name="week_3", meta={"origin": "export 3"})
    with sessions() as session:
        batch = session.get_one(DataLoad, week.batch_id)
    assert (week.name, batch.name, batch.meta) == (
        "week_3",
        "week_3",
        {"origin": "export 3", "write": "upsert"},
    )
    assert load_file(sessions, advertising_csv).name == "load_2"


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "fraction"},
        {"mode": "full", "percentage": 40},
        {"mode": "fraction", "percentage": 101},
        {"mode": "watermark"},
        {"mode": "full", "watermark_field": "updated"},
        {"mode": "weekly"},
        {"meta": {"watermark": "2024-01-01"}},
    ],
)
def test_inconsistent_options_are_refused_before_any_batch(sessions, options) -> None:
    with pytest.raises(ValueError):
        load_batch(sessions, "ads", [Record("1", {"a": "1"})], **options)
    assert count(sessions, DataLoad) == 0


def test_fraction_loads_are_cumulative(sessions, advertising_csv: Path) -> None:
    first = load_file(sessions, advertising_csv, mode="fraction", percentage=40, seed=7)
    first_keys = set(keys_of(sessions))
    second = load_file(sessions, advertising_csv, mode="fraction", percentage=43, seed=7)
    second_keys = set(keys_of(sessions))

    assert (first.rows_seen, first.rows_inserted, first.percentage) == (400, 400, 40)
    assert (second.rows_seen, second.rows_inserted, second.rows_unchanged) == (430, 30, 400)
    assert first_keys < second_keys and len(second_keys) == 430
    assert count(sessions, ItemHistory) == 430
    with sessions() as session:
        batches = session.execute(
            select(DataLoad.mode, DataLoad.percentage, DataLoad.meta).order_by(DataLoad.id)
        ).all()
        assert completed_percentage(session, "ads") == 43
    assert batches == [
        ("fraction", 40, {"fraction_seed": 7, "write": "upsert"}),
        ("fraction", 43, {"fraction_seed": 7, "write": "upsert"}),
    ]


def test_a_fraction_depends_on_the_seed_not_on_the_row_order(
    sessions, advertising_csv: Path
) -> None:
    records = list(records_from_csv(read_csv_rows(advertising_csv), label_field=TARGET))
    load_batch(sessions, "forward", records, mode="fraction", percentage=10, seed=1)
    load_batch(sessions, "backward", records[::-1], mode="fraction", percentage=10, seed=1)
    load_batch(sessions, "reseeded", records, mode="fraction", percentage=10, seed=2)
    forward = set(keys_of(sessions, "forward"))
    assert len(forward) == 100
    assert set(keys_of(sessions, "backward")) == forward
    assert set(keys_of(sessions, "reseeded")) != forward


def test_a_full_load_after_fractions_takes_the_rest(sessions, advertising_csv: Path) -> None:
    load_file(sessions, advertising_csv, mode="fraction", percentage=97)
    rest = load_file(sessions, advertising_csv)
    assert (rest.rows_inserted, rest.rows_unchanged, rest.percentage) == (30, 970, None)


def test_watermark_loads_only_rows_newer_than_the_stored_one(sessions) -> None:
    first = load_stamped(sessions, {"a": "2024-01-01T10:00:00Z", "b": "2024-01-02"})
    assert (first.rows_inserted, first.watermark) == (2, "2024-01-02")

    again = {"a": "2024-01-01T10:00:00Z", "b": "2024-01-02"}
    older = {"c": "2024-01-02T01:30:00+02:00"}  # 2024-01-01T23:30Z, though it sorts after b
    newer = {
        "d": "2024-01-02T00:00:01",  # no offset: UTC, one second after b
        "e": "2024-01-01T22:00:00-05:00",  # 2024-01-02T03:00Z, though it sorts before b
    }
    second = load_stamped(sessions, again | older | newer)
    assert (second.rows_seen, second.rows_inserted, second.rows_unchanged) == (2, 2, 0)
    assert second.older_than_watermark == 3  # a, b and c: counted, not dropped silently
    assert second.watermark == newer["e"]
    assert set(keys_of(sessions, "papers")) == {"a", "b", "d", "e"}

    third = load_stamped(sessions, again | older | newer)
    assert (third.rows_seen, third.watermark) == (0, newer["e"])  # nothing new: it stays
    with sessions() as session:
        meta = session.scalar(select(DataLoad.meta).where(DataLoad.id == third.batch_id))
        assert current_watermark(session, "papers") == newer["e"]
    assert meta == {
        "watermark_field": "updated",
        "watermark": newer["e"],
        "older_than_watermark": 5,
        "write": "upsert",
    }


def test_the_watermark_survives_a_new_process_and_orders_numbers(sessions, store_url) -> None:
    load_batch(
        sessions,
        "versions",
        [Record("x", {"version": "9"}), Record("y", {"version": "8"})],
        mode="watermark",
        watermark_field="version",
    )
    newer = {"x": "9", "p": "10", "q": "11"}  # as text, "10" and "11" sort before "9"
    process = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_NEW_PROCESS, store_url, json.dumps(newer)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(process.stdout)
    assert (result["rows_seen"], result["rows_inserted"], result["watermark"]) == (2, 2, "11")
    assert set(keys_of(sessions, "versions")) == {"x", "y", "p", "q"}


def test_rows_whose_watermark_cannot_be_ordered_are_rejected(sessions) -> None:
    load_stamped(sessions, {"a": "2024-01-01"})
    rows = [*stamped({"b": "2024-02-01", "c": "soon", "d": "17"}), Record("e", {"id": "e"})]
    result = load_batch(sessions, "papers", rows, mode="watermark", watermark_field="updated")
    assert (result.rows_seen, result.rows_inserted, result.rows_rejected) == (4, 1, 3)
    assert result.watermark == "2024-02-01"
    with sessions() as session:
        reasons = dict(
            session.execute(
                select(Rejection.key, Rejection.reason).where(Rejection.batch_id == result.batch_id)
            ).all()
        )
    assert "neither a number nor an ISO-8601 timestamp" in reasons["c"]
    assert "mixed numbers and timestamps" in reasons["d"]
    assert reasons["e"] == "no value in watermark field 'updated'"


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("9", "10"),
        (9, "9.5"),
        ("-1e3", "2"),
        ("2024-01-02T01:30:00+02:00", "2024-01-02"),
        ("2024-01-02", "2024-01-01T22:00:00-05:00"),
        ("2024-01-01T23:59:59", "2024-01-02T00:00:00Z"),
    ],
)
def test_ordering_values_compare_numbers_and_timestamps_by_value(low, high) -> None:
    assert ordering_value(low) < ordering_value(high)


@pytest.mark.parametrize("value", ["soon", "", "NaN", "Infinity", True, None])
def test_ordering_values_refuse_what_is_neither_number_nor_timestamp(value) -> None:
    with pytest.raises(ValueError, match="neither a number nor an ISO-8601 timestamp"):
        ordering_value(value)


def test_ordering_values_are_exact() -> None:
    assert ordering_value("12345678901234567891") > ordering_value("12345678901234567890")
    assert ordering_value(0.1) == Decimal("0.1")


def test_rows_the_store_cannot_keep_are_rejected_on_every_backend(sessions) -> None:
    rows = [
        Record("ok", {"a": "1"}, "x"),
        Record("k" * 501, {"a": "2"}, "x"),
        Record("long label", {"a": "3"}, "l" * 201),
        Record("nul", {"a": "4\x00"}, "x"),
        Record("escaped", {"a": "\\u0000"}, "x"),  # a backslash and "u0000": no NUL
        BadRow(7, "malformed CSV", "a,\x00,b", 5),
    ]
    result = load_batch(sessions, "odd", rows)
    assert (result.rows_seen, result.rows_inserted, result.rows_rejected) == (6, 2, 4)
    assert set(keys_of(sessions, "odd")) == {"ok", "escaped"}
    with sessions() as session:
        rejected = session.execute(
            select(Rejection.key, Rejection.reason, Rejection.raw).order_by(Rejection.id)
        ).all()
    assert [reason for _, reason, _ in rejected] == [
        "key is 501 characters, over the store's limit of 500",
        "label is 201 characters, over the store's limit of 200",
        "NUL character in the data",
        "malformed CSV",
    ]
    assert rejected[0].key == "k" * 500  # kept as far as the store allows
    assert rejected[3].raw == "a,\ufffd,b"


def test_history_of_a_load_covers_its_own_items_only(sessions) -> None:
    """A second data set's insert history names its own items, unlabelled ones included."""
    load_batch(sessions, "first", [Record("a", {"n": 1}, "x"), Record("b", {"n": 2}, "y")])
    second = load_batch(sessions, "second", [Record("a", {"n": 3}), Record("c", {"n": 4}, "z")])
    with sessions() as session:
        rows = session.execute(
            select(Item.key, ItemHistory.after)
            .join(Item, Item.id == ItemHistory.item_id)
            .where(ItemHistory.batch_id == second.batch_id)
            .order_by(Item.key)
        ).all()
    assert rows == [
        ("a", {"data": {"n": 3}, "label": None}),
        ("c", {"data": {"n": 4}, "label": "z"}),
    ]
