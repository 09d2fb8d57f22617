"""`trunkline rate` is the batch rater, mounted on the project's command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "basic"


def test_trunkline_rate_writes_the_expected_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "trunkline", "rate", "--input", str(DATA), "--output", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("rated.csv", "rated_levels.csv"):
        assert (out / name).read_text() == (DATA / "expected" / name).read_text()


def test_trunkline_rate_refuses_a_missing_input_directory(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trunkline", "rate", "--input", str(tmp_path / "nope"),
                           "--output", str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert not (tmp_path / "out" / "rated.csv").exists()
