"""`trunkline rate`: the file-based batch rater, end to end on tests/rating/data/basic."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import polars as pl
import pytest

from rating import batch
from rating.instants import parse_instant

DATA = Path(__file__).parent / "data" / "basic"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    shutil.copytree(DATA, d, ignore=shutil.ignore_patterns("expected"))
    return d


def test_end_to_end_matches_hand_computed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert batch.main(["--input", str(DATA), "--output", str(out), "--no-progress", "--no-keep-freed-memory"]) == 0
    assert (out / "rated.csv").read_text() == (DATA / "expected" / "rated.csv").read_text()
    assert (out / "rated_levels.csv").read_text() == (DATA / "expected" / "rated_levels.csv").read_text()
    captured = capsys.readouterr()
    assert "rated 11 calls (9 rated, 1 unanswered, 1 no_rate)" in captured.out
    assert captured.err == ""  # quiet when not asked for a progress bar


def test_parquet_input_gives_the_same_files(workdir: Path, tmp_path: Path) -> None:
    cdrs = pl.read_csv(workdir / "cdrs.csv", infer_schema=False)
    # a zoned datetime column for start_time, text for answer_time, integers for ids
    cdrs = cdrs.with_columns(
        pl.Series("start_time", [parse_instant(v) for v in cdrs["start_time"]]).cast(pl.Datetime("ms", "UTC")),
        pl.col("account_id").cast(pl.Int64),
        pl.col("carrier_id").cast(pl.Int64),
        pl.col("duration_ms").cast(pl.Int64),
    )
    (workdir / "cdrs.csv").unlink()
    cdrs.write_parquet(workdir / "cdrs.parquet")
    out = tmp_path / "out"
    batch.run(workdir, out, progress=False)
    assert (out / "rated.csv").read_text() == (DATA / "expected" / "rated.csv").read_text()
    assert (out / "rated_levels.csv").read_text() == (DATA / "expected" / "rated_levels.csv").read_text()


def test_invalid_deck_refused_nothing_written(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deck = workdir / "tariffs" / "wholesale.csv"
    deck.write_text(deck.read_text() + "447,dup,0.5,,,,,,,\n44x,bad,-1,,,,,,,\n")
    out = tmp_path / "out"
    assert batch.main(["--input", str(workdir), "--output", str(out), "--no-keep-freed-memory"]) == 1
    err = capsys.readouterr().err
    assert "tariffs/wholesale.csv row 3 (effective_from): prefix 447: window overlaps row 7" in err
    assert "tariffs/wholesale.csv row 7 (effective_from): prefix 447: window overlaps row 3" in err
    assert "tariffs/wholesale.csv row 8 (prefix)" in err
    assert "tariffs/wholesale.csv row 8 (rate): negative rate" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("z1,2,7,44,2025-01-10T10:00:00,,0", "no UTC offset"),
        ("a1,2,7,44,2025-01-10T10:00:00Z,,0", "call_id repeated"),
        ("z2,two,7,44,2025-01-10T10:00:00Z,,0", "account_id is not an integer"),
        ("z3,2,7,44,,,0", "start_time is empty"),
        ("z4,2,7,44,2025-01-10T10:00:00Z,2025-01-10T09:00:00Z,1000", "answer_ms before start_ms: z4"),
        ("z5,1,7,44,2025-01-10T10:00:00Z,,0", "customer_id is a reseller"),
    ],
)
def test_bad_cdrs_refused(workdir: Path, tmp_path: Path, line: str, message: str) -> None:
    with (workdir / "cdrs.csv").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(batch.InputError, match=message) as err:
        batch.run(workdir, tmp_path / "out", progress=False)
    if "repeated" in message:
        assert "lines 2, 13" in str(err.value)  # CSV line numbers, header = line 1


def test_book_problems_name_files_and_lines(workdir: Path, tmp_path: Path) -> None:
    (workdir / "accounts.csv").write_text(
        "id,parent_id,kind,tariff,billing_decimals,timezone\n1,,reseller,reseller,9,UTC\n2,1,client,retail,2,\n"
    )
    (workdir / "tariffs.csv").write_text((workdir / "tariffs.csv").read_text() + "ghost,nowhere,5\n")
    with pytest.raises(batch.InputError) as err:
        batch.run(workdir, tmp_path / "out", progress=False)
    text = str(err.value)
    assert "accounts.csv line 2: billing_decimals must be 0..6" in text
    assert "accounts.csv line 3: kind must be reseller or customer" in text
    assert "tariffs.csv line 6: ghost derives from unknown tariff 'nowhere'" in text


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(batch.InputError, match=r"accounts\.csv: file missing"):
        batch.run(tmp_path, tmp_path / "out", progress=False)


def test_progress_bar_only_when_asked(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.StringIO()
    monkeypatch.setattr(batch.sys, "stderr", fake)
    batch.run(workdir, tmp_path / "a", progress=None)  # StringIO is not a terminal
    assert fake.getvalue() == ""
    batch.run(workdir, tmp_path / "b", progress=True)
    assert "rating" in fake.getvalue() and "100%" in fake.getvalue()


def test_format_amounts() -> None:
    df = pl.DataFrame({"a": [0, 5, 12345, None, 7], "d": [2, 4, 2, 3, 0]})
    got = df.select(batch.format_amounts(pl.col("a"), pl.col("d"))).to_series().to_list()
    assert got == ["0.00", "0.0005", "123.45", None, "7"]


def test_format_amounts_without_zero_branch() -> None:
    df = pl.DataFrame({"a": [0, 5, 12345, None], "d": [2, 4, 6, 3]})
    got = df.select(batch.format_amounts(pl.col("a"), pl.col("d"), zero_decimals=False)).to_series().to_list()
    assert got == ["0.00", "0.0005", "0.012345", None]
    assert pl.select(batch.format_amounts(pl.lit(1234), 4)).item() == "0.1234"
    assert pl.select(batch.format_amounts(pl.lit(1234), 0)).item() == "1234"
