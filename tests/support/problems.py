"""Pick and check the located errors a plan run reports, so tests assert on one problem."""

from __future__ import annotations

from tenancy.contract.errors import SpecError
from tenancy.plan.planner import PlanResult


def errors_of(result: PlanResult, file: str | None = None) -> list[SpecError]:
    """The run's errors (sorted), those of one file only when ``file`` is given."""
    return [e for e in result.problems.errors if file is None or e.location.file == file]


def find(problems: list[SpecError], **want: str) -> SpecError:
    """The one problem whose fields contain the given texts (field=, message=, ...)."""
    hits = [
        p
        for p in problems
        if all(
            text in (str(p.location) if key == "location" else str(getattr(p, key)))
            for key, text in want.items()
        )
    ]
    assert hits, f"no problem matching {want} in:\n" + "\n".join(str(p) for p in problems)
    return hits[0]


def assert_located(problem: SpecError) -> None:
    """Every error names a file, a line >= 1 and says what was wrong."""
    assert problem.location.file
    assert problem.location.line >= 1, str(problem)
    assert problem.message
