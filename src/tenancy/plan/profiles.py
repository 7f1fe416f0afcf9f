"""The policy profiles a tenant may name: those of the shipped catalogue.

``spec.policies`` decides what hardening a tenant's machines get; a name the
catalogue does not know would only fail when the machines are hardened, after
``up`` created them. Only the profile names are read here (with the guarded
YAML reader); the catalogue itself is checked by :mod:`tenancy.policy`.
"""

from __future__ import annotations

import functools

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedTenant
from tenancy.contract.yamlsource import LoadError, load_file
from tenancy.project import ProjectError, shipped

CATALOGUE = "catalogue.yaml"


class CatalogueUnreadableError(Exception):
    """The shipped catalogue gives no profile names (a broken install)."""


@functools.cache
def known_profiles() -> frozenset[str]:
    """The profile names of the shipped catalogue (read once per process)."""
    try:
        path = shipped("policies") / CATALOGUE
        doc = load_file(path)
    except ProjectError as exc:
        raise CatalogueUnreadableError(str(exc)) from None
    except LoadError as exc:
        raise CatalogueUnreadableError("; ".join(str(e) for e in exc.errors)) from None
    profiles = doc.data.get("profiles") if isinstance(doc.data, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        raise CatalogueUnreadableError(f"{path}: no profiles")
    return frozenset(str(p) for p in profiles)


def check_profiles(tenant: LoadedTenant) -> list[SpecError]:
    """An error at each ``spec.policies[i]`` the catalogue does not define."""
    try:
        known = known_profiles()
    except CatalogueUnreadableError as exc:
        return [
            SpecError(
                tenant.locate("spec", "policies"),
                "spec.policies",
                "cannot check the policy profiles",
                "the installed package's policies/catalogue.yaml",
                str(exc)[:200],
            )
        ]
    listed = ", ".join(sorted(known))
    return [
        SpecError(
            tenant.locate("spec", "policies", i),
            f"spec.policies[{i}]",
            "unknown policy profile",
            f"one of {listed} (the policy catalogue)",
            repr(name),
        )
        for i, name in enumerate(tenant.model.spec.policies)
        if name not in known
    ]
