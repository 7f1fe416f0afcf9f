"""Run every benchmark one after another, then print one summary table (``make bench``).

Each benchmark appends its verdicts to a file named by ``BENCH_SUMMARY``
(``bench/_summary.py``); this runner gives each one its own file, so a benchmark that
dies without writing anything still gets a "not run" row. ``--vms 0`` (``make bench
BENCH_VMS=0``) does not start the benchmarks that boot VMs: they report every ratio as
"not run" (``BENCH_SKIP``) without touching the hypervisor.

Exit status: 1 when any target was missed, 2 when any benchmark that was asked to run
did not measure everything, 0 otherwise (ratios skipped by ``--vms 0`` do not count).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._summary import (
    EXIT_MISSED,
    EXIT_NOT_RUN,
    EXIT_OK,
    MISSED,
    NOT_RUN,
    SKIP_ENV,
    SUMMARY_ENV,
    Verdict,
    read_verdicts,
    table,
)

# (script, boots VMs): the cheap ones first, so their table rows survive a long VM run
BENCHMARKS = [
    ("bench_validate_plan.py", False),
    ("bench_program.py", False),
    ("bench_policy.py", True),
    ("bench_audit.py", True),
]


def run_one(script: str, extra: list[str], skip: str | None, summary: Path) -> list[Verdict]:
    """Run one benchmark with its own summary file; its verdicts, or one "not run" row."""
    name = script.removesuffix(".py")
    env = {**os.environ, SUMMARY_ENV: str(summary)}
    if skip:
        env[SKIP_ENV] = skip
    print(f"\n===== {script}{' (skipped: ' + skip + ')' if skip else ''} =====", flush=True)
    start = time.monotonic()
    cmd = [sys.executable, "-m", f"bench.{name}", *extra]  # as we run: from the root
    code = subprocess.run(cmd, env=env, check=False).returncode
    print(f"===== {script}: exit {code} after {time.monotonic() - start:.0f} s =====", flush=True)
    verdicts = read_verdicts(summary)
    if not verdicts:
        why = f"exited {code} without reporting a verdict"
        return [Verdict(name, "(any)", None, "-", NOT_RUN, why)]
    if code not in (EXIT_OK, EXIT_MISSED, EXIT_NOT_RUN) or (
        code != EXIT_OK and all(v.verdict not in (MISSED, NOT_RUN) for v in verdicts)
    ):
        verdicts.append(Verdict(name, "(exit status)", None, "0", NOT_RUN, f"exited {code}"))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vms",
        choices=["0", "1"],
        default=os.environ.get("BENCH_VMS") or "1",
        help="1: also run the benchmarks that boot VMs (default; env BENCH_VMS)",
    )
    parser.add_argument(
        "--with",
        dest="extra",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="arguments for one benchmark, e.g. bench_program='--sizes 10 --preview-sizes 10'",
    )
    args = parser.parse_args(argv)
    extra: dict[str, list[str]] = {}
    for item in args.extra:
        name, sep, text = item.partition("=")
        if not sep or f"{name.removesuffix('.py')}.py" not in dict(BENCHMARKS):
            parser.error(f"--with {item!r}: expected NAME=ARGS with NAME one of the benchmarks")
        extra[name.removesuffix(".py")] = shlex.split(text)
    verdicts: list[Verdict] = []
    skipped: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-summary-") as tmp:
        for script, boots_vms in BENCHMARKS:
            skip = "BENCH_VMS=0 (it boots VMs)" if boots_vms and args.vms == "0" else None
            if skip:
                skipped.add(script.removesuffix(".py"))
            summary = Path(tmp) / f"{script}.jsonl"
            verdicts += run_one(script, extra.get(script.removesuffix(".py"), []), skip, summary)
    print("\n===== summary: every ratio against a baseline measured in the same run =====")
    print(table(verdicts))
    if any(v.verdict == MISSED for v in verdicts):
        return EXIT_MISSED
    if any(v.verdict == NOT_RUN and v.benchmark not in skipped for v in verdicts):
        return EXIT_NOT_RUN
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
