"""Declared data sets on both backends: a source of other columns is refused before anything is
written; a run's ``source`` never merges into the declared data set; load modes (upsert, append,
replace); other file kinds (JSON Lines, Parquet, a folder, an https URL with its sha256)."""

from __future__ import annotations

import csv
import hashlib
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select

from http_server import QuietHandler, serving
from mlfactory.datasets.project import declarations
from mlfactory.datasets.registry import DatasetUnavailable
from mlfactory.datasets.snapshots import items_as_of
from mlfactory.ingest.declared import SchemaMismatch, load_declared
from mlfactory.ingest.state import dataset_status
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, ItemHistory, Rejection

MLFACTORY = [sys.executable, "-m", "mlfactory"]
CLICKS = """\
datasets:
  clicks:
    source: {{kind: {kind}, path: {path}}}
    key: [id]
    label: clicked
    mode: {mode}
    columns:
      id: integer
      age: {{type: integer, min: 10, max: 120}}
      city: {{type: category, nullable: true}}
      clicked: {{type: integer, choices: [0, 1]}}
"""
ROWS = [
    {"id": 1, "age": 35, "city": "Tunis", "clicked": 0},
    {"id": 2, "age": 61, "city": None, "clicked": 1},
    {"id": 3, "age": 22, "city": "Lyon", "clicked": 0},
]


def mlfactory(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MLFACTORY, *args], env=env, capture_output=True, text=True, timeout=300)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def clicks(
    settings: Settings, tmp_path: Path, *, mode: str = "upsert", kind: str = "csv", path: str = ""
) -> Settings:
    """Settings with a project file declaring data set ``clicks`` (and the rows' CSV)."""
    write_csv(tmp_path / "clicks.csv", ROWS)
    project = tmp_path / "mlfactory.yaml"
    project.write_text(CLICKS.format(kind=kind, path=path or "clicks.csv", mode=mode))
    return settings.model_copy(update={"project_file": project})


def load(settings: Settings, sessions: Any, path: Path | None = None):
    declared = declarations(settings).dataset("clicks")
    return load_declared(sessions, settings, declared, path=path)


def stored(sessions: Any, dataset: str) -> dict[str, tuple[str, Any]]:
    """key -> (content hash, deleted batch) of every item of ``dataset``."""
    with sessions() as session:
        rows = session.execute(
            select(Item.key, Item.content_hash, Item.deleted_batch_id).where(
                Item.dataset == dataset
            )
        ).all()
    return {key: (digest, deleted) for key, digest, deleted in rows}


def batches(sessions: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(DataLoad)) or 0


def test_a_file_of_other_columns_is_refused_in_one_line_and_nothing_is_written(
    cli_env: dict[str, str], sessions: Any, tmp_path: Path
) -> None:
    assert mlfactory(cli_env, "data", "load", "advertising").returncode == 0
    before, loads = stored(sessions, "advertising"), batches(sessions)
    other = write_csv(tmp_path / "clicks.csv", ROWS)

    result = mlfactory(cli_env, "data", "load", "advertising", "--file", str(other))

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "does not match data set 'advertising'" in result.stderr
    assert "missing columns 'Daily Time Spent on Site', 'Age'" in result.stderr
    assert "unexpected columns 'id', 'age', 'city', 'clicked'" in result.stderr
    assert (stored(sessions, "advertising"), batches(sessions)) == (before, loads)


def test_a_run_on_a_foreign_source_is_refused_and_the_stored_rows_stay_as_they_were(
    cli_env: dict[str, str], sessions: Any, datasets_dir: Path, model_name: str
) -> None:
    run = ("run", "advertising", "-p", f"model_name={model_name}")
    assert mlfactory(cli_env, *run).returncode == 0
    before, loads = stored(sessions, "advertising"), batches(sessions)
    catalogue = datasets_dir / "rakuten" / "X_train_update_sample499.csv"  # other columns

    result = mlfactory(cli_env, *run, "-p", f"source={catalogue}")

    assert result.returncode == 1, result.stderr
    assert "step 'load' failed" in result.stderr
    assert "missing columns 'Daily Time Spent on Site'" in result.stderr
    assert "unexpected columns '', 'designation'" in result.stderr
    assert (stored(sessions, "advertising"), batches(sessions)) == (before, loads)
    runs = json.loads(mlfactory(cli_env, "runs", "advertising", "--json").stdout)
    assert runs[0]["step_states"] == {"failed": 1, "upstream_failed": 7}  # no retry, no model


def test_a_run_on_a_valid_file_trains_on_a_data_set_of_its_own(
    settings: Settings, sessions: Any, advertising_csv: Path, tmp_path: Path, model_name: str
) -> None:
    from mlfactory.orchestration import get_pipeline, run_pipeline

    pipeline = get_pipeline("advertising")
    assert run_pipeline(pipeline, {"model_name": model_name}, settings=settings).status == "success"
    before = stored(sessions, "advertising")
    lines = advertising_csv.read_text().splitlines()
    small = settings.home / "hundred.csv"  # the home is a folder runs may read
    small.write_text("\n".join([lines[0], *lines[1:101]]) + "\n")  # 100 of the same rows

    outcome = run_pipeline(
        pipeline, {"model_name": model_name, "source": str(small)}, settings=settings
    )

    assert outcome.status == "success", outcome.error
    derived = outcome.outputs["load"]["dataset"]
    assert derived.startswith("advertising@hundred-")
    assert outcome.outputs["summary"]["samples"] == {"train": 70, "test": 30}
    assert stored(sessions, "advertising") == before  # 1,000 rows, not merged with the 100
    assert len(stored(sessions, derived)) == 100


def test_a_run_reads_a_source_file_only_under_the_allowed_folders(
    settings: Settings, sessions: Any, tmp_path: Path, model_name: str
) -> None:
    from mlfactory.orchestration import get_pipeline, run_pipeline

    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    settings.home.mkdir(parents=True, exist_ok=True)
    link = settings.home / "link.csv"  # inside the home, pointing out of it
    link.symlink_to(outside)
    pipeline = get_pipeline("advertising")
    for path in ("/etc/passwd", str(outside), str(link)):
        outcome = run_pipeline(
            pipeline, {"model_name": model_name, "source": path}, settings=settings
        )
        assert outcome.status == "failed"
        assert "is outside the folders a run may read" in (outcome.error or "")
        assert "root:" not in (outcome.error or "")  # nothing of the file is echoed
    assert batches(sessions) == 0
    allowed = settings.model_copy(update={"source_roots": [tmp_path]})
    outcome = run_pipeline(
        pipeline, {"model_name": model_name, "source": str(outside)}, settings=allowed
    )
    assert "does not match data set 'advertising'" in (outcome.error or "")  # read, then refused


def test_upsert_updates_changed_rows_and_keeps_the_others(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    settings = clicks(settings, tmp_path)
    load(settings, sessions)
    changed = write_csv(tmp_path / "v2.csv", [{**ROWS[0], "age": 36}, ROWS[1]])

    result = load(settings, sessions, changed)

    assert (result.rows_updated, result.rows_unchanged, result.rows_deleted) == (1, 1, 0)
    assert len(stored(sessions, "clicks")) == 3  # row 3, absent from v2, stays


def test_append_never_changes_a_stored_row(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    settings = clicks(settings, tmp_path, mode="append")
    load(settings, sessions)
    before = stored(sessions, "clicks")
    new = {"id": 4, "age": 50, "city": "Sfax", "clicked": 1}
    v2 = write_csv(tmp_path / "v2.csv", [{**ROWS[0], "age": 36}, ROWS[1], new])

    result = load(settings, sessions, v2)

    assert (result.rows_inserted, result.rows_unchanged, result.rows_rejected) == (1, 1, 1)
    after = stored(sessions, "clicks")
    assert after["1"] == before["1"] and set(after) == {"1", "2", "3", "4"}
    with sessions() as session:
        rejection = session.scalars(select(Rejection)).one()
    assert (rejection.line, rejection.key) == (2, "1")
    assert rejection.reason == (
        "key '1' is stored with other content; an append never changes a stored row"
    )


def test_replace_deletes_the_keys_gone_from_the_source_and_keeps_their_history(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    settings = clicks(settings, tmp_path, mode="replace")
    first = load(settings, sessions)
    bad = {"id": 3, "age": 500, "city": "Lyon", "clicked": 0}  # rejected, so row 3 stays
    v2 = write_csv(tmp_path / "v2.csv", [ROWS[0], bad])

    second = load(settings, sessions, v2)

    assert (second.rows_unchanged, second.rows_rejected, second.rows_deleted) == (1, 1, 1)
    after = stored(sessions, "clicks")
    assert after["2"][1] == second.batch_id and after["1"][1] is None and after["3"][1] is None
    with sessions() as session:
        operations = session.execute(
            select(Item.key, ItemHistory.operation, ItemHistory.before, ItemHistory.after)
            .join(Item, Item.id == ItemHistory.item_id)
            .where(ItemHistory.batch_id == second.batch_id)
        ).all()
    assert [(key, op, after) for key, op, _, after in operations] == [("2", "delete", None)]
    assert operations[0].before["data"]["age"] == 61
    assert dataset_status(sessions, "clicks")["items"] == 2  # the deleted item is not counted
    assert sorted(items_as_of(sessions, "clicks", first.batch_id)["key"]) == ["1", "2", "3"]

    third = load(settings, sessions)  # the whole file again: row 2 comes back
    assert (third.rows_inserted, third.rows_deleted) == (1, 0)
    assert stored(sessions, "clicks")["2"][1] is None


def test_a_replace_with_unreadable_rows_or_no_rows_deletes_nothing(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    settings = clicks(settings, tmp_path, mode="replace")
    load(settings, sessions)
    broken = tmp_path / "broken.csv"
    broken.write_text('id,age,city,clicked\n1,35,Tunis,0\n"2,61,,1\n')  # row 2: unclosed quote
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,age,city,clicked\n")

    for path, reason in (
        (broken, "1 rejected rows have no key: they could be any stored item"),
        (header_only, "the source had no row to keep"),
    ):
        result = load(settings, sessions, path)
        assert result.rows_deleted == 0
        with sessions() as session:
            meta = session.get_one(DataLoad, result.batch_id).meta
        assert meta["deletions_skipped"] == reason
    assert all(deleted is None for _, deleted in stored(sessions, "clicks").values())


def test_a_changed_declaration_is_refused_until_a_replace(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    settings = clicks(settings, tmp_path)
    load(settings, sessions)
    project = Path(str(settings.project_file))
    project.write_text(project.read_text().replace("city: {type: category", "city: {type: text"))

    with pytest.raises(SchemaMismatch, match=r"'city' category\? -> text\?"):
        load(settings, sessions)
    assert batches(sessions) == 1


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_json_lines_and_parquet_load_what_the_csv_loads(
    settings: Settings, sessions: Any, tmp_path: Path, kind: str
) -> None:
    load(clicks(settings, tmp_path), sessions)
    expected = stored(sessions, "clicks")
    path = tmp_path / f"rows.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in ROWS) + "{oops\n[1, 2]\n")
    else:
        pd.DataFrame(ROWS).to_parquet(path)

    other = clicks(settings, tmp_path, kind=kind, path=path.name)
    declared = declarations(other).dataset("clicks")
    result = load_declared(sessions, other, declared, into="clicks_copy")

    assert stored(sessions, "clicks_copy") == expected  # same keys, same content hashes
    if kind == "jsonl":
        with sessions() as session:
            reasons = session.scalars(
                select(Rejection.reason).where(Rejection.dataset == "clicks_copy")
            ).all()
        assert result.rows_rejected == 2
        assert (
            reasons[0].startswith("not valid JSON") and reasons[1] == "a JSON list, not an object"
        )


def test_a_corrupt_parquet_file_is_refused_and_nothing_is_written(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    broken = clicks(settings, tmp_path, kind="parquet", path=str(path))
    from mlfactory.ingest.csv_reader import SourceFileError

    with pytest.raises(SourceFileError, match="not a readable Parquet file"):
        load(broken, sessions)
    assert batches(sessions) == 0


def test_a_folder_of_files_labelled_by_their_sub_folder(
    settings: Settings, sessions: Any, tmp_path: Path
) -> None:
    for name, body in (("cats/a.txt", "meow"), ("cats/b.txt", "purr"), ("dogs/c.txt", "woof")):
        (tmp_path / "inbox" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "inbox" / name).write_text(body)
    project = tmp_path / "mlfactory.yaml"
    project.write_text(
        "datasets:\n  pets:\n    source: {kind: folder, path: inbox, pattern: '**/*.txt'}\n"
        "    key: [path]\n    label: folder\n"
        "    columns: {path: file, folder: category, size: integer}\n"
    )
    pets = settings.model_copy(update={"project_file": project})

    result = load_declared(sessions, pets, declarations(pets).dataset("pets"))

    assert result.rows_inserted == 3
    with sessions() as session:
        labels = dict(session.execute(select(Item.key, Item.label)).all())
    assert labels == {"cats/a.txt": "cats", "cats/b.txt": "cats", "dogs/c.txt": "dogs"}


def test_an_https_source_is_downloaded_once_and_checked_against_its_sha256(
    settings: Settings,
    sessions: Any,
    tmp_path: Path,
    certificate: tuple[Path, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert_path, server_tls = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # httpx trusts the test server
    content = write_csv(tmp_path / "served.csv", ROWS).read_bytes()
    requests: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    with serving(Handler, server_tls) as url:
        for digest, expected in ((hashlib.sha256(content).hexdigest(), 3), ("0" * 64, None)):
            project = tmp_path / f"{digest[:4]}.yaml"
            text = CLICKS.format(kind="csv", path="x", mode="upsert")
            project.write_text(
                text.replace("path: x", f"url: {url}/clicks.csv, sha256: '{digest}'")
            )
            remote = settings.model_copy(
                update={"project_file": project, "cache_dir": tmp_path / digest[:4]}
            )
            declared = declarations(remote).dataset("clicks")
            if expected is None:
                with pytest.raises(DatasetUnavailable, match="sha256 mismatch"):
                    load_declared(sessions, remote, declared, into="remote_bad")
            else:
                assert load_declared(sessions, remote, declared, into="remote").rows_inserted == 3
                load_declared(sessions, remote, declared, into="remote")  # from the cache
    assert requests == ["/clicks.csv", "/clicks.csv"]  # once per cache, never twice
    assert stored(sessions, "remote_bad") == {}
