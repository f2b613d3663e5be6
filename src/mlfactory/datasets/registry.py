"""The catalog of named data sets and where each of their files is found.

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

CATALOG: dict[str, DatasetSpec] = {
    "advertising": DatasetSpec(
        name="advertising",
        description="Ad-click prediction: 1000 internet users, usage features, clicked on ad.",
        files=(
            DataFile(
                name="advertising.csv",
                url="https://raw.githubusercontent.com/My-Machine-Learning-Projects-CT/"
                "Logistic-Regression-with-Python-Part-2/5026d8ec3bf5e8bc13d93d5584aa466f05da0101/"
                "advertising.csv",
                sha256="00f638aa4103ebf52935d3a62a60328100cc02a8111ca2b4769b4b3596f498f9",
            ),
        ),
    ),
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

    reasons = []
    if settings.datasets_dir is None:
        reasons.append("MLF_DATASETS_DIR is not set")
    else:
        shared = settings.datasets_dir / spec.name / data_file.name
        if shared.is_file():
            return shared
        reasons.append(f"MLF_DATASETS_DIR: no file at {shared}")

    cached = settings.cache_dir / "datasets" / spec.name / data_file.name
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
        raise DatasetUnavailable(f"{dataset}/{data_file.name} is unavailable:{details}") from None
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
