"""The loader: one audited batch per load, history for every change, nothing for no change."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.loader import load_batch, records_from_csv
from mlfactory.store import DataLoad, Item, ItemHistory, Rejection

TARGET = "Clicked on Ad"


def load_file(sessions, path: Path, **kwargs):
    rows = records_from_csv(read_csv_rows(path), label_field=TARGET)
    return load_batch(sessions, "ads", rows, source=str(path), **kwargs)


def count(sessions, what, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(what).where(*where))


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
