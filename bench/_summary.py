"""One verdict per measured ratio, printed and (for ``make bench``) appended to a file.

Every benchmark declares its ratios and their targets up front (:meth:`Report.expect`)
and reports them through :class:`Report`, so a ratio always comes with its target and a
verdict, and a ratio that could not be measured (missing tool, crash, input too small)
says ``not run`` instead of printing a passing line. When ``BENCH_SUMMARY`` names a
file, each verdict is also appended to it as one JSON line; ``bench/run_all.py`` reads
that file and prints one table for all benchmarks.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

SUMMARY_ENV = "BENCH_SUMMARY"
SKIP_ENV = "BENCH_SKIP"  # set (to the reason) by run_all.py for benchmarks not to run
OK, MISSED, NOT_RUN = "ok", "MISSED", "not run"
EXIT_OK, EXIT_MISSED, EXIT_NOT_RUN = 0, 1, 2
_OPS = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Verdict:
    """One row of the summary table (also its JSON line)."""

    benchmark: str
    metric: str
    ratio: float | None
    target: str
    verdict: str
    note: str = ""


class NotRun(Exception):  # noqa: N818 - reads as the verdict it produces
    """The benchmark cannot run here (missing tool, service or privilege): exit 2."""


class Report:
    """The verdicts of one benchmark run; :meth:`finish` turns them into the exit status."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.targets: dict[str, tuple[str, float]] = {}
        self.verdicts: list[Verdict] = []
        self.crashed = False

    def expect(self, metric: str, op: str, target: float) -> None:
        """Declare a ratio and its target: reported as ``not run`` unless measured."""
        if op not in _OPS:
            raise ValueError(f"target operator must be one of {sorted(_OPS)}: {op!r}")
        self.targets[metric] = (op, target)

    def target(self, metric: str) -> str:
        op, value = self.targets[metric]
        return f"{op} {value:g}"

    def ratio(self, metric: str, ratio: float, note: str = "") -> bool:
        """Record a measured ratio against its declared target; True when it is met."""
        op, value = self.targets[metric]
        met = bool(_OPS[op](ratio, value))
        verdict = OK if met else MISSED
        self._add(Verdict(self.benchmark, metric, ratio, self.target(metric), verdict, note))
        return met

    def not_run(self, metric: str, why: str) -> None:
        """A declared ratio that was not measured, and why."""
        self._add(Verdict(self.benchmark, metric, None, self.target(metric), NOT_RUN, why))

    def pending(self) -> list[str]:
        done = {v.metric for v in self.verdicts}
        return [m for m in self.targets if m not in done]

    def _add(self, v: Verdict) -> None:
        self.verdicts.append(v)
        shown = "-" if v.ratio is None else f"{v.ratio:.3f}"
        note = f"  ({v.note})" if v.note else ""
        print(f"{self.benchmark}: {v.metric} = {shown} (target {v.target}): {v.verdict}{note}")
        sys.stdout.flush()
        path = os.environ.get(SUMMARY_ENV)
        if path:
            with Path(path).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(v), ensure_ascii=False) + "\n")

    def finish(self, body: Callable[[], None]) -> int:
        """Run ``body``, mark every ratio it did not report ``not run``, return the exit code.

        Exit codes: 1 when a target was missed; 2 when the benchmark could not run (it
        raised :class:`NotRun`, crashed, or measured nothing; ``BENCH_SKIP`` set: not
        started at all); 0 otherwise. A crash is never hidden behind the ratios
        measured before it.
        """
        why = "the benchmark ended before measuring it"
        skip = os.environ.get(SKIP_ENV)
        try:
            if skip:
                raise NotRun(f"skipped: {skip}")
            body()
        except NotRun as exc:
            why = str(exc) if skip else f"cannot run here: {exc}"
            print(f"{self.benchmark}: not run: {exc}", file=sys.stderr)
        except (Exception, SystemExit) as exc:  # a crash must still produce its rows
            self.crashed = True
            if isinstance(exc, SystemExit) and isinstance(exc.code, str | None):
                message = exc.code or "exited early"
            else:
                message = "".join(traceback.format_exception(exc)).rstrip()
            print(f"{self.benchmark}: failed: {message}", file=sys.stderr)
            why = "failed: " + message.strip().splitlines()[-1][:160]
        for metric in self.pending():
            self.not_run(metric, why)
        kinds = {v.verdict for v in self.verdicts}
        if MISSED in kinds:
            return EXIT_MISSED
        if self.crashed or OK not in kinds:
            return EXIT_NOT_RUN
        return EXIT_OK


def read_verdicts(path: Path) -> list[Verdict]:
    """The JSON lines written by :class:`Report` (no file: none)."""
    if not path.is_file():
        return []
    return [
        Verdict(**json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def table(verdicts: list[Verdict]) -> str:
    """The summary table: benchmark, metric, measured ratio, target, verdict (+ why not run)."""
    header = ("benchmark", "metric", "ratio", "target", "verdict")
    rows = [
        (v.benchmark, v.metric, "-" if v.ratio is None else f"{v.ratio:.3f}", v.target, v.verdict)
        for v in verdicts
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [line(header), line(tuple("-" * w for w in widths)), *map(line, rows)]
    notes = [f"  {v.benchmark}: {v.metric}: {v.note}" for v in verdicts if v.verdict == NOT_RUN]
    if notes:
        lines += ["", "not run, because:", *notes]
    return "\n".join(lines)
