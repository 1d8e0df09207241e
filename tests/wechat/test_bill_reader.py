"""The streaming bill reader: same rows and totals as :func:`parse_bill`, read lazily from
any iterable of lines, and the same refusals for a damaged file."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable, Iterator

import pytest

from scanpay.errors import MalformedMessageError
from scanpay.wechat.bill import (
    HEAD_BYTES,
    BillReader,
    BillRow,
    BillSink,
    BillSummary,
    build_bill,
    lines_of,
    parse_bill,
)
from scanpay.wechat.fields import yuan_to_fen


def rows(count: int) -> list[BillRow]:
    return [
        BillRow(
            trade_time=f"2025-03-01 10:{i % 60:02d}:00",
            transaction_id=f"42{i:08d}",
            out_trade_no=f"order{i:05d}",
            trade_state="SUCCESS",
            settlement_total_fen=100 + i,
            order_fen=100 + i,
            fee_fen=1,
            body="绿茶, 250 克",
            refund_id="0",
            out_refund_no="0",
        )
        for i in range(count)
    ]


def test_reader_matches_parse_bill() -> None:
    text = build_bill(rows(30))
    reader = BillReader(lines_of(text.encode()))
    streamed = list(reader.rows())
    parsed = parse_bill(text)
    assert streamed == list(parsed.rows)
    assert reader.summary == parsed.summary
    assert reader.header == parsed.header
    assert reader.row_count == 30
    assert streamed[3].body == "绿茶, 250 克"  # a comma inside a value survives


def summary_of(reader: BillReader) -> BillSummary | None:
    return reader.summary


def test_rows_are_read_one_at_a_time() -> None:
    text = build_bill(rows(5))
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in text.splitlines(keepends=True):
            consumed.append(line)
            yield line

    reader = BillReader(lines())
    iterator = reader.rows()
    first = next(iterator)
    assert first.out_trade_no == "order00000"
    assert len(consumed) == 2  # the header and one row, nothing more
    assert summary_of(reader) is None
    assert len(list(iterator)) == 4
    summary = summary_of(reader)
    assert summary is not None
    assert summary.trade_count == 5


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: "",  # empty
        lambda t: t.rsplit("\n", 3)[0] + "\n",  # no summary
        lambda t: t.rsplit("\n", 2)[0] + "\n",  # summary header without its row
        lambda t: t + "`1,`2\n",  # something after the summary
        lambda t: t.replace("`order00001", "`order00001,`extra"),  # a row too wide
        lambda t: t.replace("总交易单数", "合计"),  # not a summary header
        lambda t: t.replace("`1.01", "`1.011"),  # a fraction of a fen
    ],
)
def test_damaged_bills_are_refused(damage: Callable[[str], str]) -> None:
    text = damage(build_bill(rows(3)))
    with pytest.raises(MalformedMessageError):
        list(BillReader(lines_of(text.encode())).rows())


def test_bytes_that_are_not_utf8_are_refused() -> None:
    data = build_bill(rows(2)).encode().replace(b"order00001", b"order\xff0001")
    with pytest.raises(MalformedMessageError):
        list(BillReader(lines_of(data)).rows())


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0.01", 1), ("12.3", 1230), ("-1.5", -150), ("7", 700), ("0.01000", 1), ("-0.00", 0)],
)
def test_yuan_to_fen_is_exact(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["0.005", "1e3", "", "1.", ".5", "--1", "1.000000001"])
def test_yuan_to_fen_refuses(text: str) -> None:
    with pytest.raises(MalformedMessageError):
        yuan_to_fen(text)


def test_sink_writes_plain_and_gzip_files_in_chunks() -> None:
    text = build_bill(rows(200)).encode()
    for sent in (text, gzip.compress(text, mtime=0)):
        out = io.BytesIO()
        sink = BillSink(out)
        for start in range(0, len(sent), 1000):
            sink.write(sent[start : start + 1000])
        sink.close()
        assert out.getvalue() == text
        assert sink.size == len(text)
        assert sink.file_sha1 == hashlib.sha1(text, usedforsecurity=False).hexdigest()
        assert sink.received_sha1 == hashlib.sha1(sent, usedforsecurity=False).hexdigest()
        assert sink.head == text[:HEAD_BYTES]


def test_sink_refuses_damaged_or_oversized_files() -> None:
    packed = gzip.compress(build_bill(rows(50)).encode(), mtime=0)
    truncated = BillSink(io.BytesIO())
    truncated.write(packed[:-20])
    with pytest.raises(MalformedMessageError):
        truncated.close()
    corrupt = BillSink(io.BytesIO())
    with pytest.raises(MalformedMessageError):
        corrupt.write(packed[:10] + b"\x00" * 50 + packed[60:])
    for sent in (b"x" * 5000, gzip.compress(b"x" * 5000)):
        small = BillSink(io.BytesIO(), limit=4096)
        with pytest.raises(MalformedMessageError, match="too large"):
            small.write(sent)
