"""Tests for the tolerant CSV reader, on the real advertising file and on damaged copies of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfactory.ingest.csv_reader import (
    RAW_KEEP_CHARS,
    BadRow,
    SourceFileError,
    SourceRow,
    read_csv_rows,
    read_header,
)

HEADER = [
    "Daily Time Spent on Site",
    "Age",
    "Area Income",
    "Daily Internet Usage",
    "Ad Topic Line",
    "City",
    "Male",
    "Country",
    "Timestamp",
    "Clicked on Ad",
]


@pytest.fixture
def advertising(advertising_csv: Path) -> Path:
    return advertising_csv


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source.csv"
    path.write_bytes(data)
    return path


def split(path: Path, **limits: int) -> tuple[list[SourceRow], list[BadRow]]:
    items = list(read_csv_rows(path, **limits))
    good = [item for item in items if isinstance(item, SourceRow)]
    bad = [item for item in items if isinstance(item, BadRow)]
    assert len(good) + len(bad) == len(items)
    return good, bad


def test_real_file_yields_all_1000_rows(advertising: Path) -> None:
    good, bad = split(advertising)

    assert bad == []
    assert [row.line for row in good] == list(range(2, 1002))
    assert read_header(advertising) == HEADER
    assert good[0].fields == dict(
        zip(
            HEADER,
            [
                "68.95",
                "35",
                "61833.9",
                "256.09",
                "Cloned 5thgeneration orchestration",
                "Wrightburgh",
                "0",
                "Tunisia",
                "2016-03-27 00:53:11",
                "0",
            ],
            strict=True,
        )
    )
    # The real file has no quoting, so a plain split is an independent check of every value.
    lines = advertising.read_text(encoding="utf-8").splitlines()[1:]
    assert [row.fields for row in good] == [
        dict(zip(HEADER, line.split(","), strict=True)) for line in lines
    ]


def test_injected_bad_rows_do_not_swallow_good_ones(advertising: Path, tmp_path: Path) -> None:
    header, *rows = advertising.read_bytes().splitlines()
    prefix = b"55.5,41,"
    big_topic = b"x" * 10_485_760
    big = b"80.0,30,60000.0,200.0," + big_topic + b",Paris,1,France,2016-01-01 00:00:00,1"
    multiline_fields = ["70.5", "30", "50000.5", "200.1", "Line one, with a comma\nline two"]
    multiline_fields += ["Lyon", "1", "France", "2016-01-02 00:00:00", "1"]
    multiline = (
        b'70.5,30,50000.5,200.1,"Line one, with a comma\nline two",Lyon,1,France,'
        b"2016-01-02 00:00:00,1"
    )
    unclosed = b'68.95,35,"61833.9,256.09,Cloned,Wrightburgh,0,Tunisia,2016-03-27,0'
    injected = {  # record inserted before the real row of that index
        200: unclosed,
        400: prefix + b"\xffmmen,x,y,z,w,Paris,0,France",
        500: b"1,2,3,4,5,6,7",
        600: big,
        700: multiline,
    }
    out, line = [header], 2
    good_lines: dict[int, dict[str, str]] = {}
    bad_lines: list[int] = []
    for index, row in enumerate(rows):
        if index in injected:
            record = injected[index]
            out.append(record)
            if record is multiline:
                good_lines[line] = dict(zip(HEADER, multiline_fields, strict=True))
            else:
                bad_lines.append(line)
            line += record.count(b"\n") + 1
        out.append(row)
        good_lines[line] = dict(zip(HEADER, row.decode().split(","), strict=True))
        line += 1
    path = write(tmp_path, b"\n".join(out) + b"\n")

    good, bad = split(path)

    assert len(good) == 1001
    assert {row.line: row.fields for row in good} == good_lines
    after_unclosed = bad_lines[0] + 1
    assert {after_unclosed, after_unclosed + 1} <= {row.line for row in good}
    assert [row.line for row in bad] == bad_lines
    first, last = bad_lines[0], bad_lines[0] + 99  # an open quote takes at most 100 lines
    assert bad[0].reason == f"unclosed quote: no valid record in lines {first}-{last}"
    assert bad[0].raw == unclosed.decode()
    assert bad[1].reason == f"not valid UTF-8: byte 0xff at position {len(prefix)}"
    assert bad[1].raw.startswith("55.5,41,\N{REPLACEMENT CHARACTER}mmen")
    assert bad[2].reason == "expected 10 fields, got 7"
    assert bad[3].reason == (
        "field 'Ad Topic Line' is 10,485,760 bytes, over the limit of 1,000,000"
    )
    assert len(bad[3].raw) == RAW_KEEP_CHARS
    assert bad[3].raw_bytes == len(big)


def test_unclosed_quote_at_end_of_file_costs_only_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b,c\n1,2,3\n4,"5,6\n7,8,9\n')

    good, bad = split(path)

    assert [(row.line, row.fields) for row in good] == [
        (2, {"a": "1", "b": "2", "c": "3"}),
        (4, {"a": "7", "b": "8", "c": "9"}),
    ]
    assert [(row.line, row.reason, row.raw) for row in bad] == [
        (3, "unclosed quote: no valid record in lines 3-4", '4,"5,6')
    ]


@pytest.mark.parametrize(
    "closing_line",
    [b'7,"8",9', b'7,8,9"'],
    ids=["closed-into-malformed-quoting", "closed-into-wrong-field-count"],
)
def test_quote_closed_by_a_later_line_resynchronises(tmp_path: Path, closing_line: bytes) -> None:
    path = write(tmp_path, b'a,b,c\n1,"2,3\n4,5,6\n' + closing_line + b"\n")

    good, bad = split(path)

    assert [row.line for row in good] == [3, 4]
    assert good[0].fields == {"a": "4", "b": "5", "c": "6"}
    assert [(row.line, row.reason) for row in bad] == [
        (2, "unclosed quote: no valid record in lines 2-4")
    ]


def test_open_quote_gives_up_after_max_record_lines(tmp_path: Path) -> None:
    rows = b"".join(b"%d,%d,%d\n" % (n, n, n) for n in range(10))
    path = write(tmp_path, b'a,b,c\n1,"2,3\n' + rows)

    good, bad = split(path, max_record_lines=3)

    assert [row.line for row in good] == list(range(3, 13))
    assert [(row.line, row.reason) for row in bad] == [
        (2, "unclosed quote: no valid record in lines 2-4")
    ]


def test_non_utf8_line_inside_an_open_quote_is_reported_on_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b,c\n1,"2,3\n4,\xfe,6\n7,8,9\n')

    good, bad = split(path)

    assert [row.line for row in good] == [4]
    assert [(row.line, row.reason) for row in bad] == [
        (2, "unclosed quote: no valid record in lines 2-3"),
        (3, "not valid UTF-8: byte 0xfe at position 2"),
    ]


def test_malformed_quoting_on_one_line_is_a_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b,c\n1,"2"x,3\n4,5,6\n')

    good, bad = split(path)

    assert [row.line for row in good] == [3]
    assert bad[0].line == 2
    assert bad[0].reason.startswith("malformed CSV")


def test_field_limit_counts_utf8_bytes_not_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,abcd\n2,éé\n3,ééx\n".encode())

    good, bad = split(path, max_field_bytes=4)

    assert [row.fields["b"] for row in good] == ["abcd", "éé"]
    assert [(row.line, row.reason) for row in bad] == [
        (4, "field 'b' is 5 bytes, over the limit of 4")
    ]


def test_crlf_line_endings_and_whitespace(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b,c\r\n1, two ,3\r\n4,"x\r\ny",6\r\n7,8,9\r\n')

    good, bad = split(path)

    assert bad == []
    assert [(row.line, row.fields) for row in good] == [
        (2, {"a": "1", "b": " two ", "c": "3"}),
        (3, {"a": "4", "b": "x\ny", "c": "6"}),  # lines are split on \n, so \r\n becomes \n
        (5, {"a": "7", "b": "8", "c": "9"}),
    ]


def test_bom_is_removed_from_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfa,b\n1,2\n")

    assert read_header(path) == ["a", "b"]
    assert [row.fields for row in read_csv_rows(path)] == [{"a": "1", "b": "2"}]


def test_blank_lines_are_skipped_but_kept_inside_quoted_fields(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b\n\n1,2\n\n\n3,"x\n\ny"\n')

    good, bad = split(path)

    assert bad == []
    assert [(row.line, row.fields) for row in good] == [
        (3, {"a": "1", "b": "2"}),
        (6, {"a": "3", "b": "x\n\ny"}),
    ]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b,c\n")

    assert read_header(path) == ["a", "b", "c"]
    assert list(read_csv_rows(path)) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\n\r\n\n", "empty file"),
        (b"a,b,a,c,b\n1,2,3,4,5\n", "duplicate header names: a, b"),
        (b"a,\xffb\n1,2\n", "header is not valid UTF-8: byte 0xff at position 2"),
    ],
    ids=["empty", "only-blank-lines", "duplicate-names", "header-not-utf8"],
)
def test_unusable_file_raises(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, data)

    for read in (read_header, lambda p: list(read_csv_rows(p))):
        with pytest.raises(SourceFileError) as caught:
            read(path)
        assert str(path) in str(caught.value)
        assert message in str(caught.value)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match="cannot open"):
        read_header(tmp_path / "absent.csv")
    with pytest.raises(SourceFileError, match="cannot open"):
        list(read_csv_rows(tmp_path / "absent.csv"))
