"""The auditors' compliance suite as a pytest plugin, modelled on pytest-testinfra.

The checks (``test_<domain>.py``, shipped as ``tenancy._resources.compliance``)
stay short for an auditor; this package holds what they stand on, one job a
module:

- :mod:`.plugin`: the pytest hooks, options, fixtures, xdist scheduler and the
  control gate (profiles, waivers);
- :mod:`.items` and :mod:`.expect`: the ``@control`` marker, per-item
  parametrization and expectations that say what they expect;
- :mod:`.evidence` and :mod:`.records`: every command run, and records.json;
- :mod:`.facts` and the parsers :mod:`.chrony`, :mod:`.audit_rules`,
  :mod:`.nft`, :mod:`.network`: what a host says, read once per host;
- :mod:`.applicability`: whether a control applies to a host (shared with the
  report, so the suite and results.json always agree);
- :mod:`.inventory`, :mod:`.probes`, :mod:`.probe_runner`, :mod:`.probe_results`:
  the firewall's reachability probes.

``control`` is imported lazily: :mod:`.applicability` (and with it
``tenancy.policy.report``) must import where pytest is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenancy.compliance.items import control

__all__ = ["control"]


def __getattr__(name: str) -> Any:
    if name == "control":
        from tenancy.compliance.items import control

        return control
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
