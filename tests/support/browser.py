"""Headless Chromium (Debian's package) for the audit report: the DOM after scripts ran.

Shared by the synthetic report test and the audit steps on real VMs; a missing
browser fails the test with the package to install.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium() -> str:
    """The browser binary, or a failed test naming the package to install."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "integration prerequisite missing: chromium "
        "(apt-get install -y --no-install-recommends chromium)",
        pytrace=False,
    )


def dump_dom(page: Path, profile: Path, fragment: str = "") -> str:
    """The page's DOM as Chromium has it after running its scripts."""
    url = page.as_uri() + (f"#{fragment}" if fragment else "")
    dom = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def screenshot(page: Path, profile: Path, shot: Path) -> None:
    """A PNG of the page for a human to look at."""
    done = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--window-size=1400,1800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


class MatrixCells(HTMLParser):
    """The matrix cells of a DOM: (control, host) -> [result attribute, class, text]."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], list[str]] = {}
        self._current: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-control") and a.get("data-host"):
            key = (str(a["data-control"]), str(a["data-host"]))
            self.cells[key] = [str(a.get("data-result")), str(a.get("class")), ""]
            self._current = key

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.cells[self._current][2] += data.strip()


def matrix_cells(dom: str) -> dict[tuple[str, str], list[str]]:
    """The report matrix of a dumped DOM (see :class:`MatrixCells`)."""
    parser = MatrixCells()
    parser.feed(dom)
    return parser.cells
