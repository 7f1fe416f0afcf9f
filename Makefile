# One command surface: setup, demo, test, lint, bench. CI calls `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
ENV := source tools/env.sh &&
SITE ?= local

.PHONY: setup python-env engine hypervisor-up hypervisor-down image state test-deps demo test acceptance unit lint bench

setup: python-env engine hypervisor-up image state  ## install and start everything, idempotently

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

demo: setup  ## validate, plan and bring up the tenants of the local site
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

acceptance: setup test-deps  ## the long hardening scenario on real VMs
	$(ENV) python -m pytest -s $(ACCEPTANCE)

unit: python-env
	$(ENV) python -m pytest tests/unit

lint: python-env
	$(ENV) ruff check src tests stacks bench policies && ruff format --check src tests stacks bench policies
	$(ENV) mypy

bench: python-env
	$(ENV) for b in bench/bench_*.py; do python "$$b"; done
