"""The data set registry against a real local HTTP server and real folders (no mocks)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from http_server import QuietHandler, serving
from mlfactory.datasets import CATALOG, DataFile, DatasetSpec, DatasetUnavailable, resolve
from mlfactory.datasets.project import declarations
from mlfactory.settings import Settings


@dataclass
class FileServer:
    """What the local server serves (bodies, redirects by path) and the paths it was asked for."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[self.path])
                self.end_headers()
            elif self.path in state.files:
                body = state.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

    with serving(Handler) as base_url:
        state.base_url = base_url
        yield state


@pytest.fixture
def content(advertising_csv: Path) -> bytes:
    return advertising_csv.read_bytes()


def catalog_for(server: FileServer, content: bytes) -> dict[str, DatasetSpec]:
    url = f"{server.base_url}/advertising.csv"
    sha = hashlib.sha256(content).hexdigest()
    spec = DatasetSpec("advertising", "test copy", (DataFile("advertising.csv", url, sha),))
    return {"advertising": spec}


def settings_for(tmp_path: Path, datasets_dir: Path | None = None) -> Settings:
    return Settings(home=tmp_path, datasets_dir=datasets_dir, cache_dir=tmp_path / "cache")


def cache_folder(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "datasets" / "advertising"


def test_found_in_datasets_dir_without_touching_the_network(
    tmp_path: Path, server: FileServer, content: bytes
) -> None:
    shared = tmp_path / "shared" / "advertising" / "advertising.csv"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(content)
    settings = settings_for(tmp_path, datasets_dir=tmp_path / "shared")

    assert resolve("advertising", settings=settings, catalog=catalog_for(server, content)) == shared
    assert server.requests == []
    assert not cache_folder(tmp_path).exists()


def test_found_in_cache_when_datasets_dir_unset(
    tmp_path: Path, server: FileServer, content: bytes
) -> None:
    cached = cache_folder(tmp_path) / "advertising.csv"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content)
    catalog = catalog_for(server, content)

    path = resolve(
        "advertising", "advertising.csv", settings=settings_for(tmp_path), catalog=catalog
    )

    assert path == cached
    assert server.requests == []


def test_corrupt_cache_entry_is_downloaded_again(
    tmp_path: Path, server: FileServer, content: bytes
) -> None:
    cached = cache_folder(tmp_path) / "advertising.csv"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content[:-10])
    server.files["/advertising.csv"] = content

    path = resolve(
        "advertising", settings=settings_for(tmp_path), catalog=catalog_for(server, content)
    )

    assert path == cached
    assert path.read_bytes() == content
    assert server.requests == ["/advertising.csv"]


def test_downloaded_into_cache_once(tmp_path: Path, server: FileServer, content: bytes) -> None:
    server.files["/advertising.csv"] = content
    settings = settings_for(tmp_path, datasets_dir=tmp_path / "empty")
    catalog = catalog_for(server, content)

    first = resolve("advertising", settings=settings, catalog=catalog)
    second = resolve("advertising", settings=settings, catalog=catalog)

    assert first == second == cache_folder(tmp_path) / "advertising.csv"
    assert first.read_bytes() == content
    assert server.requests == ["/advertising.csv"]
    assert [p.name for p in cache_folder(tmp_path).iterdir()] == ["advertising.csv"]


def test_download_follows_redirects(tmp_path: Path, server: FileServer, content: bytes) -> None:
    server.redirects["/advertising.csv"] = "/moved/advertising.csv"
    server.files["/moved/advertising.csv"] = content

    path = resolve(
        "advertising", settings=settings_for(tmp_path), catalog=catalog_for(server, content)
    )

    assert path.read_bytes() == content
    assert server.requests == ["/advertising.csv", "/moved/advertising.csv"]


def test_sha256_mismatch_leaves_nothing_in_cache(
    tmp_path: Path, server: FileServer, content: bytes
) -> None:
    tampered = content.replace(b"Clicked on Ad", b"Clicked on AD", 1)
    server.files["/advertising.csv"] = tampered
    catalog = catalog_for(server, content)

    with pytest.raises(DatasetUnavailable) as excinfo:
        resolve("advertising", settings=settings_for(tmp_path), catalog=catalog)

    message = str(excinfo.value)
    assert "sha256 mismatch" in message
    assert catalog["advertising"].files[0].sha256 in message
    assert hashlib.sha256(tampered).hexdigest() in message
    assert list(cache_folder(tmp_path).iterdir()) == []


@pytest.mark.parametrize("datasets_dir_set", [True, False])
def test_nothing_anywhere_names_all_three_places(
    tmp_path: Path, server: FileServer, content: bytes, datasets_dir_set: bool
) -> None:
    datasets_dir = tmp_path / "shared" if datasets_dir_set else None
    catalog = catalog_for(server, content)

    with pytest.raises(DatasetUnavailable) as excinfo:
        resolve("advertising", settings=settings_for(tmp_path, datasets_dir), catalog=catalog)

    message = str(excinfo.value)
    if datasets_dir_set:
        assert f"no file at {tmp_path / 'shared' / 'advertising' / 'advertising.csv'}" in message
    else:
        assert "MLF_DATASETS_DIR is not set" in message
    assert f"not in the cache at {cache_folder(tmp_path) / 'advertising.csv'}" in message
    assert f"download from {server.base_url}/advertising.csv failed: HTTP 404" in message
    assert list(cache_folder(tmp_path).iterdir()) == []


def test_unknown_data_set_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match=r"unknown data set 'nope'.*arxiv"):
        resolve("nope", settings=settings_for(tmp_path))


def test_unknown_file_lists_the_data_set_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match=r"no file 'other.csv'.*arxiv_data\.csv"):
        resolve("arxiv", "other.csv", settings=settings_for(tmp_path))


@pytest.mark.parametrize(
    ("dataset", "file"), [(spec.name, f) for spec in CATALOG.values() for f in spec.files]
)
def test_catalog_sha256_matches_the_shared_files(
    datasets_dir: Path, dataset: str, file: DataFile
) -> None:
    content = (datasets_dir / dataset / file.name).read_bytes()
    assert hashlib.sha256(content).hexdigest() == file.sha256


@pytest.mark.parametrize(
    "dataset",
    [name for name, d in declarations(Settings()).datasets.items() if d.source.url],
)
def test_declared_sha256_matches_the_shared_files(datasets_dir: Path, dataset: str) -> None:
    source = declarations(Settings()).datasets[dataset].source
    assert source.shared is not None
    content = (datasets_dir / source.shared).read_bytes()
    assert hashlib.sha256(content).hexdigest() == source.sha256
