"""Every Python block in the README and the docs runs, unless it is marked as not runnable.

A block whose first line names a file (``# orders.py``) is written under that name, so the
scripts of a page import the modules of any page, as a reader who saved them would. Each
block of a page then runs in page order, in one fresh directory per page (so a script finds
the journal the one before it made). A block preceded by ``<!-- no-run: why -->`` is not
run (a fragment, a worker that runs until stopped); one preceded by ``<!-- killed: why -->``
must end killed by SIGKILL (a script that crashes itself to show recovery).
REPL transcripts are fenced as ``pycon``, not ``python``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (?P<mark>no-run|killed): [^>]+-->\n)?(?P<indent>[ \t]*)```python\n(?P<code>.*?)(?P=indent)```", re.S)
FILE_NAME = re.compile(r"#\s*([\w/]+\.py)\b")


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """The page's Python blocks: (line, code, marker: ``no-run``, ``killed`` or None)."""
    text = page.read_text()
    found = []
    for m in BLOCK.finditer(text):
        code = textwrap.dedent(m.group("indent") + m.group("code"))
        found.append((text[: m.start("indent")].count("\n") + 1, code, m.group("mark")))
    return found


def file_name(code: str) -> str | None:
    first = code.lstrip("\n").split("\n", 1)[0]
    m = FILE_NAME.match(first)
    return m.group(1) if m else None


def named_files() -> dict[str, str]:
    """Every block that names its file, across all pages (the first one of a name wins)."""
    files: dict[str, str] = {}
    for page in PAGES:
        for _, code, _ in blocks(page):
            name = file_name(code)
            if name is not None:
                files.setdefault(name, code)
    return files


PAGES_WITH_CODE = [page for page in PAGES if any(mark != "no-run" for _, _, mark in blocks(page))]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE])
def test_the_python_blocks_of_the_page_run(page: Path, tmp_path: Path) -> None:
    for name, code in named_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ACTORFLOW_SECRET", None)
    for line, code, mark in blocks(page):
        if mark == "no-run":
            continue
        name = file_name(code)
        if name is not None:
            (tmp_path / name).write_text(code)  # this page's version of the file
        command = [sys.executable, name] if name is not None else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        expected = -signal.SIGKILL if mark == "killed" else 0
        assert done.returncode == expected, f"{page.relative_to(ROOT)}:{line} exited {done.returncode}:\n{done.stderr[-2000:]}"


def test_every_page_block_is_found() -> None:
    # the harness must see the blocks it claims to run: a changed fence style would hide them
    total = sum(len(blocks(page)) for page in PAGES)
    assert total >= 100
