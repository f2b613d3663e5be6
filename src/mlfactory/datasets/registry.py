"""Where the files of data sets are found: the catalog of the files that source kinds in code
read (``rakuten``, ``arxiv``), and the lookup every file with a URL goes through, declared
sources included.

In order: the shared folder ``MLF_DATASETS_DIR`` (trusted as-is, so not hashed on every use), the
local cache (checked against its sha256), then the public URL (downloaded into the cache, kept
only if the sha256 matches). If all three fail, one :class:`DatasetUnavailable` says why each did.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlfactory.errors import UserError
from mlfactory.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataFile:
    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    files: tuple[DataFile, ...]


class DatasetUnavailable(UserError):
    """A data set file could be found in none of the places; the message says why for each."""


class _DownloadFailed(Exception):
    pass


_RAKUTEN = (
    "https://raw.githubusercontent.com/cactux/stream_rak/"
    "d689f9972153e633eea2ba8c2e01556c4e1c05b9/data/raw/"
)

_ARXIV_CSV = (
    "https://raw.githubusercontent.com/tiagoft/NLP/"
    "897bafbd4a97393ae8797f59ec501d6c943ec1ac/arxiv_data.csv"
)
_ARXIV_PY_FIXTURES = (
    "https://raw.githubusercontent.com/lukasschwab/arxiv.py/"
    "93315e7ce9f48e0786317ac2c3d78bdf5bdb748f/tests/fixtures/"
)
# Real export.arxiv.org exchanges {url, status_code, body} recorded by the arxiv client's tests.
_ARXIV_RECORDED = {
    "id_0000.0000_s0_m100_8b51d9633a68.json": (
        "2b2aa00ba11c1043c1bc8f43a128faddd755ea8a32261e83d4f4b0713eb69b98"
    ),
    "id_0808.05394_1707.08567_s0_m100_42e5aa0ec3af.json": (
        "7367694eef7335d14e78bb57282952c067f3aac76fdcee8d491da8d4fc9032cb"
    ),
    "id_0808.05394_s0_m100_7b0c7d0a7cdd.json": (
        "6d7c72d49f56839bd2aa6eee7ca2aeed6dd44e483160574d49aecbe6556de33c"
    ),
    "id_1605.08386_s0_m100_199195aa31ad.json": (
        "1a4adeebcdbfe3804c43913a609de0e821c3fddfb6257c83142a1fc4e7e85cdd"
    ),
    "id_1707.08567_s0_m100_6a1afebfc6a3.json": (
        "e3b30e58d4b8e093bbc5b641c174fb37e0fcf2d078a262af167e41270db789e6"
    ),
    "id_2104.12255v1_s0_m100_6ae69987ffe1.json": (
        "985dd6dfeeef84df14f44c85bd24cbf8a1ca17d73f5b680d500adac0b0b07ac1"
    ),
    "id_abc_s0_m100_b79c8dcf6bc3.json": (
        "186a3922ea878cab5a6029b0c96f8ba330224c1074d296d1c7e9cf519a933141"
    ),
    "id_astro-ph_0601001_s0_m100_3150dca9dc76.json": (
        "46692f2155e0abfb324340939b77cda366513a84c5fa5fcb30c1ef72b7aa26d2"
    ),
    "id_quant-ph_0201082v1_s0_m100_86989fe779ef.json": (
        "51e1136c1cde059dad2cbf4b66ca4342b90f2605860af92f33073388fd85ffdc"
    ),
    "q_testing_s0_m100_cfe7536492ca.json": (
        "609d1cb4670d359ee42350dd6d49f4a6aa7add393dfb60354435c019e0ed73c0"
    ),
    "q_testing_s0_m10_bc5a6c384fe9.json": (
        "9102e796e6bb9708127f1ed162aff9e2edf3f936d9ad9d73c0aabb784479b73a"
    ),
    "q_testing_s0_m15_80c242b59d59.json": (
        "4f31da49d8ef3e29d2d45582ebc5796c2f9df0dada3b1740ecaf297086d72c54"
    ),
    "q_testing_s10_m10_34e56e15aaac.json": (
        "a13361a8726c07fd83170eddbd23557d42a2aca0dd9494818d4ab0a07f3bf451"
    ),
    "q_testing_s20_m10_348a237fecab.json": (
        "325acb7edc2bc8d3e02aab37e38bff997300a46335c9b88eee3778db6724d7a5"
    ),
    "q_testing_s30_m10_f2e39f0143dc.json": (
        "a644f62e21e9e40a061efd5a2088848e521cb1ecd44fe3adc501c6b7bdae9d5b"
    ),
    "q_testing_s40_m10_96dd32eb854c.json": (
        "8e0e739a4e9edf6bd25655c116ad89e65b043f3ae1d13551c5aef1b543211ca1"
    ),
    "q_testing_s50_m10_7f488ab8598c.json": (
        "65c434ff6ae63e410a31b5f56b5c61a5a774cb2211420fe20c83209949b7d333"
    ),
    "q_testing_s5_m10_c0e94a259d4a.json": (
        "8fa005b1243d84c856bd63b29c13188a36dbb3aa41c842d51b0114ec71902887"
    ),
    "q_testing_s5_m15_bbcf6b23085b.json": (
        "dd409687569a0c8cfc0987d1ffcaa1afa78c82573dc7ebb077d891efa448bf73"
    ),
    "q_testing_s9_m15_0b78d4b4d476.json": (
        "4ce90df95f089a73b37e824ef75f5d374c6081bea15e0903ab368847d131a01f"
    ),
}

CATALOG: dict[str, DatasetSpec] = {
    "rakuten": DatasetSpec(
        name="rakuten",
        description=(
            "Rakuten France product catalogue: designation and description of the first 499 "
            "products (X) and the full 84,916-row product type label file (Y)."
        ),
        files=(
            DataFile(
                name="X_train_update_sample499.csv",
                url=_RAKUTEN + "X_train_update.csv_",
                sha256="69a38f39842c112b23d7e9cf2d090c19dbc4786298fb2615052c72e5fc53da71",
            ),
            DataFile(
                name="Y_train_CVw08PX.csv",
                url=_RAKUTEN + "Y_train_CVw08PX.csv",
                sha256="a1db7eafe0031d85fe2d022452d6647f11177370275f92fe7f1cde6ff1fcb5f8",
            ),
        ),
    ),
    "arxiv": DatasetSpec(
        name="arxiv",
        description=(
            "arXiv papers: titles, abstracts and category terms of 1,000 papers (CSV snapshot), "
            "and 20 recorded arXiv API exchanges (Atom) for replay."
        ),
        files=(
            DataFile(
                name="arxiv_data.csv",
                url=_ARXIV_CSV,
                sha256="f7bb0aa044684daeffa18e99ff35a04d34161336ef3a870a4fd5e85609ef83d2",
            ),
            *(
                DataFile(f"api_responses/recorded_json/{name}", _ARXIV_PY_FIXTURES + name, sha)
                for name, sha in _ARXIV_RECORDED.items()
            ),
        ),
    ),
}


def resolve(
    dataset: str,
    file: str | None = None,
    *,
    settings: Settings,
    catalog: Mapping[str, DatasetSpec] = CATALOG,
) -> Path:
    """The local path of ``file`` (default: the first one) of ``dataset``, downloading if needed."""
    spec = catalog.get(dataset)
    if spec is None:
        known = ", ".join(sorted(catalog)) or "none"
        raise DatasetUnavailable(f"unknown data set {dataset!r}; known data sets: {known}")
    data_file = next((f for f in spec.files if file in (None, f.name)), None)
    if data_file is None:
        names = ", ".join(f.name for f in spec.files)
        raise DatasetUnavailable(f"data set {dataset!r} has no file {file!r}; its files: {names}")
    return fetch(data_file, f"{spec.name}/{data_file.name}", settings)


def fetch(data_file: DataFile, shared: str, settings: Settings) -> Path:
    """``data_file`` from ``MLF_DATASETS_DIR/shared``, else the cache, else its URL (into the
    cache, checked against its sha256)."""
    reasons = []
    if settings.datasets_dir is None:
        reasons.append("MLF_DATASETS_DIR is not set")
    else:
        in_shared = settings.datasets_dir / shared
        if in_shared.is_file():
            return in_shared
        reasons.append(f"MLF_DATASETS_DIR: no file at {in_shared}")

    cached = settings.cache_dir / "datasets" / shared
    if not cached.is_file():
        reasons.append(f"not in the cache at {cached}")
    elif (actual := _sha256(cached)) == data_file.sha256:
        return cached
    else:
        log.warning("corrupt cache entry %s (sha256 %s), downloading it again", cached, actual)
        reasons.append(f"corrupt cache entry at {cached}: sha256 {actual}")

    try:
        _download(data_file, cached, settings.download_timeout)
    except _DownloadFailed as exc:
        reasons.append(f"download from {data_file.url} failed: {exc}")
        details = "".join(f"\n  - {reason}" for reason in reasons)
        raise DatasetUnavailable(f"{shared} is unavailable:{details}") from None
    return cached


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _download(data_file: DataFile, target: Path, timeout: float) -> None:
    """Stream ``data_file`` into a temporary file next to ``target``, renamed only if it matches.

    The temporary file lives in the same folder so that ``os.replace`` is atomic: readers see
    either no file or the whole verified one, and a failure leaves nothing behind.
    """
    import httpx  # here, so importing the registry does not pay for httpx

    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
        ) as out:
            tmp = Path(out.name)
            digest = hashlib.sha256()
            with httpx.stream("GET", data_file.url, timeout=timeout, follow_redirects=True) as r:
                if not r.is_success:
                    raise _DownloadFailed(f"HTTP {r.status_code} {r.reason_phrase}")
                for chunk in r.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        if (actual := digest.hexdigest()) != data_file.sha256:
            raise _DownloadFailed(f"sha256 mismatch: expected {data_file.sha256}, got {actual}")
        os.replace(tmp, target)
    except (httpx.HTTPError, OSError) as exc:
        raise _DownloadFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
