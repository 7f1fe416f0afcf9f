"""Run a GitHub Actions job's own shell steps here, as the runner would.

Enough of the runner for the tenant pull-request check: ``run:`` steps in bash
(``-eo pipefail``) in their ``working-directory``; ``env:`` and ``if:`` with the
expressions that workflow uses (``steps.<id>.outputs.<name>``,
``github.event.pull_request.number``, ``always()``, ``==``/``!=`` against a
string); per-step ``GITHUB_OUTPUT``. The ``uses:`` steps (checkouts, Python
setup, artifact upload) are the caller's to prepare: the workspace already holds
``pr-data`` (the merge commit) and ``base`` (its first parent), and the package
is installed. The install step is skipped for the same reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_TERM = re.compile(r"^(\S+)\s*(==|!=)\s*'([^']*)'$")
SKIPPED_RUN_STEPS = frozenset({"Install tenancy from the base branch"})


@dataclass
class StepRun:
    name: str
    ran: bool
    code: int = 0
    output: str = ""


@dataclass
class JobRun:
    steps: list[StepRun] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    temp: Path = Path()

    @property
    def ok(self) -> bool:
        return all(s.code == 0 for s in self.steps if s.ran)

    def step(self, name: str) -> StepRun:
        return next(s for s in self.steps if s.name == name)

    def failed(self) -> list[str]:
        return [s.name for s in self.steps if s.ran and s.code != 0]


def _value(expr: str, job: JobRun, event: dict[str, Any]) -> str:
    parts = expr.split(".")
    if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
        return job.outputs.get(parts[1], {}).get(parts[3], "")
    if expr == "github.event.pull_request.number":
        return str(event["number"])
    if expr == "runner.temp":
        return str(job.temp)
    raise ValueError(f"expression not supported here: {expr}")


def _condition(text: str | None, job: JobRun, event: dict[str, Any]) -> bool:
    if text is None:
        return job.ok  # success()
    result = True
    for term in (t.strip() for t in str(text).split("&&")):
        if term == "always()":
            continue
        match = _TERM.match(term)
        if match is None:
            raise ValueError(f"condition not supported here: {term}")
        value = _value(match.group(1), job, event)
        result = result and ((value == match.group(3)) == (match.group(2) == "=="))
    return result and (job.ok or "always()" in str(text))


def _outputs(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return dict(
        line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line
    )


def run_job(
    workflow: Path, job: str, workspace: Path, event: dict[str, Any], timeout: float = 300
) -> JobRun:
    """Run ``job``'s shell steps of ``workflow`` in ``workspace``; returns every step's result."""
    spec = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    temp = workspace / "runner-temp"
    temp.mkdir(exist_ok=True)
    run = JobRun(temp=temp)
    for index, step in enumerate(spec["jobs"][job]["steps"]):
        name = step.get("name", step.get("uses", f"step {index}"))
        if "run" not in step or name in SKIPPED_RUN_STEPS:
            run.steps.append(StepRun(name, ran=False))
            continue
        if not _condition(step.get("if"), run, event):
            run.steps.append(StepRun(name, ran=False))
            continue
        output = temp / f"output-{index}"
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(workspace),
            "LANG": "C.UTF-8",
            "RUNNER_TEMP": str(temp),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(temp / "summary.md"),
        }
        for key, value in (step.get("env") or {}).items():
            env[key] = _EXPR.sub(lambda m: _value(m.group(1), run, event), str(value))
        script = temp / f"step-{index}.sh"
        script.write_text(step["run"], encoding="utf-8")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace / step.get("working-directory", "."),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        run.steps.append(StepRun(name, True, done.returncode, done.stdout + done.stderr))
        if "id" in step:
            run.outputs[step["id"]] = _outputs(output)
    return run
