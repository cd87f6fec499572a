"""The examples run, as a new user would run them, and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", ["result: 'hello ada'", "failed: ValueError: card 4242 was declined", "cancelled after"]),
        ("fan_out.py", ["'total': 55", "failed     ValueError: empty chunk"]),
        ("approval.py", ["result: yes", "actorflow.sleep"]),
        ("trust.py", ["runs written so far: 0", "InvalidInput: charge", "TamperedRecord: result of the edited run",
                      "charge completed charged 12 USD", "view verified: False | result: Unverified('charged 12 USD')"]),
    ],
)
def test_example_runs(script: str, expected: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), str(tmp_path / "demo.db")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, done.stdout
