"""A tolerant CSV reader for the source files of data sets.

It never crashes on bad input and never lets a bad record swallow good ones: every record comes
out either as a :class:`SourceRow` or as a :class:`BadRow` that says what is wrong and where.
Only a file that is unusable as a whole (missing, empty, bad header) raises
:class:`SourceFileError`. Values stay raw strings; type checks belong to validation.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlfactory.errors import UserError

RAW_KEEP_CHARS = 4_000

# The csv module refuses fields over its limit (128 KiB by default) with an error that names no
# column, so lift it out of the way and enforce `max_field_bytes` ourselves. sys.maxsize would
# overflow a C long on some platforms; 2**31 - 1 fits everywhere.
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class SourceRow:
    line: int
    fields: dict[str, str]


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str
    raw: str
    raw_bytes: int
    key: str | None = None  # when known: a replace keeps the stored item of a rejected row


class SourceFileError(UserError):
    """The file as a whole is unusable: missing, empty, no header or a bad header."""


class _Lines:
    """Numbered physical lines of a binary file, with push-back for resynchronisation."""

    def __init__(self, file: BinaryIO) -> None:
        self._numbered = enumerate(file, start=1)
        self._pushed: list[tuple[int, bytes]] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> tuple[int, bytes]:
        if self._pushed:
            return self._pushed.pop()
        number, line = next(self._numbered)
        return number, line.removesuffix(b"\n").removesuffix(b"\r")

    def push_back(self, lines: list[tuple[int, bytes]]) -> None:
        self._pushed.extend(reversed(lines))


def read_header(path: Path, *, delimiter: str = ",") -> list[str]:
    """Return the column names of `path`, or raise :class:`SourceFileError`."""
    with _open(path) as file:
        return _header(_Lines(file), path, delimiter)


def read_csv_rows(
    path: Path,
    *,
    max_field_bytes: int = 1_000_000,
    max_record_lines: int = 100,
    delimiter: str = ",",
) -> Iterator[SourceRow | BadRow]:
    """Stream the records of `path`, one :class:`SourceRow` or :class:`BadRow` each.

    A quoted field may span lines, but a record is given at most `max_record_lines` physical
    lines. If its quote stays open that long or to the end of the file, or the lines it took do
    not make a valid record, only its first line is reported (as an unclosed quote) and reading
    resumes at its second line, so the rows after a stray quote are not lost.
    """
    with _open(path) as file:
        lines = _Lines(file)
        header = _header(lines, path, delimiter)
        for start, first in lines:
            if first:
                yield _record(
                    lines, start, first, header, max_field_bytes, max_record_lines, delimiter
                )


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as error:
        raise SourceFileError(f"{path}: cannot open: {error.strerror}") from error


def _header(lines: _Lines, path: Path, delimiter: str) -> list[str]:
    raw = next((line for _, line in lines if line), None)
    if raw is None:
        raise SourceFileError(f"{path}: empty file, no header")
    try:
        names = next(csv.reader([raw.decode("utf-8-sig") + "\n"], strict=True, delimiter=delimiter))
    except UnicodeDecodeError as error:
        raise SourceFileError(f"{path}: header is not valid UTF-8: {_where(error)}") from None
    except csv.Error as error:
        raise SourceFileError(f"{path}: header is not valid CSV: {error}") from None
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SourceFileError(f"{path}: duplicate header names: {', '.join(duplicates)}")
    return names


def _record(
    lines: _Lines,
    start: int,
    first: bytes,
    header: list[str],
    max_field_bytes: int,
    max_record_lines: int,
    delimiter: str,
) -> SourceRow | BadRow:
    try:
        text = first.decode()
    except UnicodeDecodeError as error:
        return bad_bytes(start, f"not valid UTF-8: {_where(error)}", [first])
    taken = [(start, first)]
    try:
        fields = _parse(text, lines, taken, max_record_lines, delimiter)
    except csv.Error as error:
        if len(taken) == 1:
            return bad_bytes(start, f"malformed CSV: {error}", [first])
        fields = None
    if fields is None or (len(taken) > 1 and len(fields) != len(header)):
        lines.push_back(taken[1:])
        end = taken[-1][0]
        span = f"line {start}" if end == start else f"lines {start}-{end}"
        return bad_bytes(start, f"unclosed quote: no valid record in {span}", [first])
    raw = [line for _, line in taken]
    if len(fields) != len(header):
        return bad_bytes(start, f"expected {len(header)} fields, got {len(fields)}", raw)
    # Only a record longer than the limit can hold a field over it, so most skip the encoding.
    if sum(len(line) for line in raw) > max_field_bytes:
        for name, value in zip(header, fields, strict=True):
            size = len(value.encode())
            if size > max_field_bytes:
                reason = f"field {name!r} is {size:,} bytes, over the limit of {max_field_bytes:,}"
                return bad_bytes(start, reason, raw)
    return SourceRow(start, dict(zip(header, fields, strict=True)))


def _parse(
    text: str, lines: _Lines, taken: list[tuple[int, bytes]], max_lines: int, delimiter: str
) -> list[str] | None:
    """Parse the record whose first line is `text`, or return None if its quote never closes.

    The csv reader pulls a further line only while a quoted field is open, so `taken` ends up
    holding exactly the physical lines of the record. The supply is cut at `max_lines`, at the
    end of the file and at a line that is not UTF-8. Raises csv.Error for malformed quoting.
    """
    cut = False

    def supply() -> Iterator[str]:
        nonlocal cut
        yield text + "\n"  # the newline is what the reader keeps inside a multi-line field
        while len(taken) < max_lines and (item := next(lines, None)) is not None:
            taken.append(item)
            try:
                line = item[1].decode()
            except UnicodeDecodeError:
                break
            yield line + "\n"
        cut = True

    try:
        return next(csv.reader(supply(), strict=True, delimiter=delimiter))
    except csv.Error:
        if cut:
            return None
        raise


def bad_bytes(line: int, reason: str, raw_lines: list[bytes]) -> BadRow:
    raw = b"\n".join(raw_lines)
    # A UTF-8 character is at most 4 bytes: decode no more than the characters that are kept.
    kept = raw[: RAW_KEEP_CHARS * 4].decode(errors="replace")[:RAW_KEEP_CHARS]
    return BadRow(line, reason, kept, len(raw))


def _where(error: UnicodeDecodeError) -> str:
    """Name the first bad byte and its 0-based byte offset in the line."""
    return f"byte 0x{error.object[error.start]:02x} at position {error.start}"
