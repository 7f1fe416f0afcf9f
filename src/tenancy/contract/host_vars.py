"""Host variables: the contract between the planner, Ansible and the auditors.

A policy run and an audit read the same inventory variables. The planner
renders them (:mod:`tenancy.policy.variables`), the playbook and the roles
read them by name (``policies/playbook.yml``, ``roles/*/meta/argument_specs.yml``),
and the compliance suite reads them back from the inventory file pytest was
given. Their names are spelled here only: each field says which inventory
variable it is and how to read it back, so Python code reads ``hv.address``
and ``hv.policy.controls``, never ``hv["ansible_host"]``.

The inventory is written in three parts, at the level each belongs to:

:class:`SiteVars`    per tenant group: the site's ``tenancy_site_*`` settings (two of them
                     depend on the tenant's segment)
:class:`PolicyVars`  per host: its profiles, its waived controls, the controls and roles it
                     gets (resolved once, in Python) and its declared flows
:class:`HostVars`    one host's merged view (all < tenant < group < host) as readers see it:
                     how to reach it, its tenant, and the two parts above

Reading is tolerant (:meth:`_Vars.from_inventory`): an inventory written by hand
may leave variables out, and they take the field's default, as the readers'
own ``.get(key, default)`` did before. A value of the wrong kind is a
:class:`HostVarsError` naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Self

__all__ = [
    "ANSIBLE_HOST",
    "ANSIBLE_USER",
    "CONTROLS",
    "DEFAULT_PROFILES",
    "FIREWALL_RULES",
    "GROUP",
    "HYPERVISOR",
    "PROFILES",
    "ROLES",
    "SEGMENT",
    "SITE",
    "SITE_APT_MIRROR",
    "SITE_APT_PROXY",
    "SITE_DNS_SERVERS",
    "SITE_NTP_SERVERS",
    "SITE_OPS_CIDRS",
    "SITE_OPS_SSH_KEYS",
    "SITE_OPS_USER",
    "SITE_SYSLOG_HOST",
    "SITE_SYSLOG_PORT",
    "SITE_SYSLOG_PROTOCOL",
    "SITE_VARIABLES",
    "TENANT",
    "WAIVED_CONTROLS",
    "ZONE",
    "HostVars",
    "HostVarsError",
    "PolicyVars",
    "SiteVars",
    "parse_hosts",
]

# -- the variable names ---------------------------------------------------------------

ANSIBLE_HOST: Final = "ansible_host"
ANSIBLE_USER: Final = "ansible_user"
TENANT: Final = "tenancy_tenant"
GROUP: Final = "tenancy_group"
HYPERVISOR: Final = "tenancy_hypervisor"
ZONE: Final = "tenancy_zone"
SEGMENT: Final = "tenancy_segment"
SITE: Final = "tenancy_site"
PROFILES: Final = "tenancy_profiles"
WAIVED_CONTROLS: Final = "tenancy_waived_controls"
CONTROLS: Final = "tenancy_controls"
ROLES: Final = "tenancy_roles"
FIREWALL_RULES: Final = "tenancy_firewall_rules"
SITE_OPS_CIDRS: Final = "tenancy_site_ops_cidrs"
SITE_OPS_USER: Final = "tenancy_site_ops_user"
SITE_OPS_SSH_KEYS: Final = "tenancy_site_ops_ssh_keys"
SITE_NTP_SERVERS: Final = "tenancy_site_ntp_servers"
SITE_DNS_SERVERS: Final = "tenancy_site_dns_servers"
SITE_APT_PROXY: Final = "tenancy_site_apt_proxy"
SITE_APT_MIRROR: Final = "tenancy_site_apt_mirror"
SITE_SYSLOG_HOST: Final = "tenancy_site_syslog_host"
SITE_SYSLOG_PORT: Final = "tenancy_site_syslog_port"
SITE_SYSLOG_PROTOCOL: Final = "tenancy_site_syslog_protocol"

#: The profiles of a host whose inventory names none.
DEFAULT_PROFILES: Final = ("baseline",)

_KEY = "inventory_key"
_READ = "read"
_PART = "part"


class HostVarsError(ValueError):
    """An inventory variable holds a value of the wrong kind."""


# -- readers: inventory value -> field value --------------------------------------------


def _strings(value: Any) -> tuple[str, ...]:
    """A list of names; a single name counts as a list of one, null as none."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    raise HostVarsError(f"expected a list of names, got {value!r}")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _port(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise HostVarsError(f"expected a port number, got {value!r}") from None


def _rules(value: Any) -> tuple[Mapping[str, Any], ...]:
    """The declared flows; entries that are not mappings are left out (the role rejects them)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise HostVarsError(f"expected a list of flows, got {value!r}")
    return tuple(r for r in value if isinstance(r, Mapping))


def _var(key: str, read: Callable[[Any], Any], default: Any) -> Any:
    """A field that is the inventory variable ``key``, read back with ``read``."""
    return field(default=default, metadata={_KEY: key, _READ: read})


def _inventory_value(value: Any) -> Any:
    """What YAML for Ansible can hold: tuples become lists, mappings dicts."""
    if isinstance(value, tuple):
        return [_inventory_value(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


class _Vars:
    """Shared by the parts: each field is a variable (:func:`_var`) or a part of its own."""

    def to_inventory(self) -> dict[str, Any]:
        """The variables as the inventory holds them; fields that are None are not rendered."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if _PART in f.metadata:
                out.update(value.to_inventory())
            elif value is not None:
                out[f.metadata[_KEY]] = _inventory_value(value)
        return out

    @classmethod
    def from_inventory(cls, variables: Mapping[str, Any]) -> Self:
        """Read the fields back from a host's merged variables; absent ones keep defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if _PART in f.metadata:
                values[f.name] = f.metadata[_PART].from_inventory(variables)
                continue
            key = f.metadata[_KEY]
            if key in variables:
                try:
                    values[f.name] = f.metadata[_READ](variables[key])
                except HostVarsError as exc:
                    raise HostVarsError(f"inventory variable {key}: {exc}") from None
        return cls(**values)


# -- the three parts --------------------------------------------------------------------


@dataclass(frozen=True)
class SiteVars(_Vars):
    """The site's settings the roles read, rendered per tenant group."""

    ops_cidrs: tuple[str, ...] = _var(SITE_OPS_CIDRS, _strings, ())
    """Operations networks: where SSH may come from (BASE-FW-03)."""
    ops_user: str = _var(SITE_OPS_USER, _text, "")
    """The account the operators (and Ansible) log in as."""
    ops_ssh_keys: tuple[str, ...] = _var(SITE_OPS_SSH_KEYS, _strings, ())
    """The site's operator public keys: exactly these may log in as ``ops_user`` (BASE-SSH-09)."""
    ntp_servers: tuple[str, ...] = _var(SITE_NTP_SERVERS, _strings, ())
    dns_servers: tuple[str, ...] = _var(SITE_DNS_SERVERS, _strings, ())
    apt_proxy: str = _var(SITE_APT_PROXY, _text, "")
    """``http://IP:PORT`` or ``""``."""
    apt_mirror: str = _var(SITE_APT_MIRROR, _text, "")
    syslog_host: str = _var(SITE_SYSLOG_HOST, _text, "")
    """Central syslog IP or ``""`` (MLPS-LOG-01 needs one)."""
    syslog_port: int = _var(SITE_SYSLOG_PORT, _port, 514)
    syslog_protocol: str = _var(SITE_SYSLOG_PROTOCOL, _text, "tcp")


#: The per-site variables the roles read, in the order the playbook documents them.
SITE_VARIABLES: Final = tuple(f.metadata[_KEY] for f in fields(SiteVars))


@dataclass(frozen=True)
class PolicyVars(_Vars):
    """What the baseline does on one host, rendered per host.

    ``controls`` and ``roles`` are the selection the playbook applies as given:
    the profiles resolved through ``extends``, waived controls removed, in
    catalogue order (:func:`tenancy.policy.variables.host_variables`). None
    means the inventory does not say (not rendered by Tenancy).
    """

    profiles: tuple[str, ...] = _var(PROFILES, _strings, ())
    """Profile names; empty when the inventory names none (see :data:`DEFAULT_PROFILES`)."""
    waived_controls: tuple[str, ...] = _var(WAIVED_CONTROLS, _strings, ())
    """Control IDs with an active waiver on the day the inventory was rendered."""
    controls: tuple[str, ...] | None = _var(CONTROLS, _strings, None)
    roles: tuple[str, ...] | None = _var(ROLES, _strings, None)
    firewall_rules: tuple[Mapping[str, Any], ...] = _var(FIREWALL_RULES, _rules, ())
    """Declared flows: ``{direction, peer_cidr, proto, port, comment}``."""

    def profiles_or_default(self) -> tuple[str, ...]:
        """The host's profiles, :data:`DEFAULT_PROFILES` when it names none."""
        return self.profiles or DEFAULT_PROFILES


@dataclass(frozen=True)
class HostVars(_Vars):
    """One host's merged variables as the planner rendered them (or a hand-written inventory)."""

    address: str | None = _var(ANSIBLE_HOST, _optional_text, None)
    """None when the inventory gives none (Ansible then connects to the host's name)."""
    user: str = _var(ANSIBLE_USER, _text, "ops")
    """The site's ops user (the site contract's default is ``ops``)."""
    tenant: str | None = _var(TENANT, _optional_text, None)
    # parts: groups of variables of their own, merged into the same mapping
    policy: PolicyVars = field(default_factory=PolicyVars, metadata={_PART: PolicyVars})
    site: SiteVars = field(default_factory=SiteVars, metadata={_PART: SiteVars})

    def address_or(self, name: str) -> str:
        """Where to reach the host: its address, else its inventory name."""
        return name if self.address is None else self.address


def parse_hosts(hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, HostVars]:
    """Host name -> its variables read back, for a whole inventory's hosts."""
    return {name: HostVars.from_inventory(hv) for name, hv in hosts.items()}
