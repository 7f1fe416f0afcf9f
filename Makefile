# One command surface: setup, demo, doctor, test, lint, bench, purge.
# CI (.ci/run) calls `make lint types` and `make test`; pre-commit calls lint, types, unit.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
ENV := source tools/env.sh &&
SITE ?= local

.PHONY: setup python-env engine hypervisor-up hypervisor-down image state test-deps demo test acceptance unit lint types check bench

.PHONY: standins purge

# Each step installs its own prerequisites (Debian packages included) and
# creates the directories it relies on; the order below is only for speed.
setup: python-env engine hypervisor-up image state standins  ## install and start everything, idempotently

python-env:
	bash tools/python-env.sh

engine: python-env
	bash tools/build-pulumi.sh

hypervisor-up:
	bash tools/hypervisor.sh up

hypervisor-down:
	bash tools/hypervisor.sh down

image: hypervisor-up
	bash tools/guest-image.sh

state: python-env
	bash tools/state.sh

# network namespaces standing in for the intranet/extranet/internet clients the
# audit's firewall probes connect from (without them those items are "not tested")
standins: hypervisor-up
	bash tools/standins.sh up

.PHONY: doctor
# read-only: each failed check prints the one command that fixes it (exit 1 if any failed)
doctor:  ## check this machine for everything the journeys need
	$(ENV) tenancy doctor --site $(SITE)

demo: setup  ## check the machine, validate, plan and bring up the tenants of the local site
	$(ENV) tenancy doctor --site $(SITE)
	$(ENV) tenancy validate tenants/
	$(ENV) tenancy plan --site $(SITE)
	$(ENV) tenancy up --site $(SITE)

test-deps:
	bash tools/test-deps.sh

# The hardening run (PolicyRun, harden --check drift, Lynis before/after) takes
# 40-90 min under software emulation: `make acceptance`, outside the CI budget.
ACCEPTANCE := tests/integration/test_policy_run.py

test: setup test-deps  ## unit + integration tests (real engine, libvirt and VMs)
	$(ENV) python -m pytest tests/unit tests/integration $(addprefix --ignore=,$(ACCEPTANCE))

# PACKAGES=1 also removes the Debian packages setup installed (and only those)
purge:  ## remove what setup installed, built and started (VMs, daemons, images, caches, state, venv)
	bash tools/purge.sh $(if $(filter 1,$(PACKAGES)),--packages)

acceptance: setup test-deps  ## the long hardening scenario on real VMs
	$(ENV) python -m pytest -s $(ACCEPTANCE)

unit: python-env
	$(ENV) python -m pytest tests/unit

# style: Python (ruff), YAML (yamllint), Ansible (ansible-lint); .github/CODEOWNERS current
lint: python-env
	$(ENV) ruff check src tests stacks bench policies && ruff format --check src tests stacks bench policies
	$(ENV) ansible-lint --offline --profile production roles/ policies/playbook.yml
	$(ENV) yamllint --strict .
	$(ENV) tenancy codeowners --check

types: python-env  ## mypy strict over src, tests, bench, stacks and policies (config in pyproject.toml)
	$(ENV) mypy

# what pre-commit runs (.pre-commit-config.yaml) and what to run before pushing
check: lint types unit  ## lint + types + unit tests

bench: python-env
	$(ENV) python -m bench.run_all --vms "$(or $(BENCH_VMS),1)"
