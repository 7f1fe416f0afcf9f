"""Machinery shared by the libvirt dynamic providers.

Pulumi pickles a dynamic provider (with dill) into the state of every
resource. Our provider classes live in importable modules of the ``tenancy``
package, so dill stores a reference to the class, not its code: the dynamic
provider process (the venv's python, project installed editable) imports the
current code. Providers therefore keep no state of their own.

Conventions of every provider here:

* inputs are declared once in ``input_defaults`` (``REQUIRED`` or a default);
  ``check`` fills defaults, drops unknown keys and validates;
* outputs repeat every input (the engine hands old *outputs* to ``diff``) plus
  computed values; ``read`` overwrites the observable ones with what libvirt
  reports, so ``pulumi refresh`` records drift and the next ``up`` repairs it;
* ``diff`` names exactly the inputs that force a replacement, and always asks
  for delete-before-replace (libvirt objects are keyed by name);
* ``delete`` treats "already gone" as success; ``read`` of a missing object
  returns an empty id, which tells the engine the resource is gone;
* a failed ``create``/``read``/``update``/``delete`` raises one line naming
  the resource, the host and what libvirt said, with a hint; the traceback goes
  to a log file (:mod:`tenancy.infra.dynamic._errors`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ReadResult, ResourceProvider

from tenancy.infra.dynamic._errors import one_line_errors

PROVIDER_KEY = "__provider"
# The engine's placeholder for values not known during preview
# (pulumi.runtime.rpc.UNKNOWN; repeated here to keep a stable import surface).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def is_known(value: Any) -> bool:
    """False when ``value`` is, or contains, an unknown (preview-time) value."""
    if isinstance(value, str):
        return value != UNKNOWN
    if type(value).__name__ == "Unknown":  # pulumi.output.Unknown inside nested inputs
        return False
    if isinstance(value, Mapping):
        return all(is_known(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(is_known(v) for v in value)
    return True


def canonical(value: Any) -> Any:
    """A comparable form: numbers as int when integral, tuples as lists, no None in dicts.

    Property bags cross the engine as protobuf Structs: numbers come back as
    floats and keys with ``None`` values are dropped, so both sides of a diff
    are normalised the same way.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def gone() -> ReadResult:
    """The read result for an object that no longer exists."""
    return ReadResult("", {})


class LibvirtProvider(ResourceProvider):
    """Base of the providers: input declaration, check, diff."""

    # The serialized provider is a class reference without captured secrets.
    serialize_as_secret_always = False

    kind: ClassVar[str] = "object"
    input_defaults: ClassVar[Mapping[str, Any]] = {}
    replace_on: ClassVar[frozenset[str]] = frozenset()
    stable_outputs: ClassVar[frozenset[str]] = frozenset()
    """Outputs an in-place update keeps (known in a preview, so dependents show no change)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every operation a subclass defines the one-line error behaviour."""
        super().__init_subclass__(**kwargs)
        for action in ("create", "read", "update", "delete"):
            fn = cls.__dict__.get(action)
            if fn is not None and not getattr(fn, "__tenancy_one_line__", False):
                setattr(cls, action, one_line_errors(cls.kind, action, fn))

    # --- check ------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs: dict[str, Any] = {}
        failures: list[CheckFailure] = []
        for key, default in self.input_defaults.items():
            value = news.get(key)
            if value is None:
                if default is REQUIRED:
                    failures.append(CheckFailure(key, f"{self.kind}: '{key}' is required"))
                    continue
                value = copy.deepcopy(default)
            if value is not None:
                inputs[key] = value
        if not failures and is_known(inputs):
            failures.extend(
                CheckFailure(key, f"{self.kind}: {message}")
                for key, message in self.validate(inputs)
            )
        return CheckResult(inputs, failures)

    def validate(self, _inputs: dict[str, Any]) -> list[tuple[str, str]]:
        """(input key, message) for every problem; called only with known inputs."""
        return []

    # --- diff -------------------------------------------------------------

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [
            key
            for key in self.input_defaults
            if canonical(olds.get(key)) != canonical(news.get(key))
        ]
        changed.extend(key for key in self.drift(olds) if key not in changed)
        replaces = self.replacements(changed, olds, news)
        stables = self.replace_on - set(changed)
        if not replaces:
            stables |= self.stable_outputs
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=sorted(stables),
            delete_before_replace=True,
        )

    def drift(self, _olds: dict[str, Any]) -> list[str]:
        """Output keys whose observed value (from ``read``) calls for an update."""
        return []

    def replacements(
        self, changed: list[str], _olds: dict[str, Any], _news: dict[str, Any]
    ) -> list[str]:
        """The changed keys that force a replacement (override for finer rules)."""
        return [key for key in changed if key in self.replace_on]

    # --- outputs ----------------------------------------------------------

    def outputs(self, props: Mapping[str, Any], **computed: Any) -> dict[str, Any]:
        """All inputs plus computed outputs (the engine diffs against these)."""
        outs = {key: props[key] for key in self.input_defaults if props.get(key) is not None}
        outs.update({key: value for key, value in computed.items() if value is not None})
        return outs


# --- property access (props arrive untyped, numbers as floats) -------------------


def prop_str(props: Mapping[str, Any], key: str) -> str:
    value = props.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"property '{key}' must be a non-empty string, got {value!r}")
    return value


def prop_opt_str(props: Mapping[str, Any], key: str) -> str | None:
    value = props.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"property '{key}' must be a string, got {value!r}")
    return value


def prop_int(props: Mapping[str, Any], key: str) -> int:
    value = props.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"property '{key}' must be an integer, got {value!r}")
    return int(value)


def prop_opt_int(props: Mapping[str, Any], key: str) -> int | None:
    return None if props.get(key) is None else prop_int(props, key)


def prop_bool(props: Mapping[str, Any], key: str, default: bool) -> bool:
    value = props.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"property '{key}' must be a boolean, got {value!r}")
    return value


def prop_list(props: Mapping[str, Any], key: str) -> list[Any]:
    value = props.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError(f"property '{key}' must be a list, got {value!r}")
    return list(value)


def prop_dict(props: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = props.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"property '{key}' must be a mapping, got {value!r}")
    return dict(value)


def problems_of(fn: Any, *args: Any) -> list[tuple[str, str]]:
    """Run a spec builder; a ``ValueError`` becomes one validation problem."""
    try:
        fn(*args)
    except ValueError as exc:
        return [("", str(exc))]
    return []


def args_to_props(args: Any) -> dict[str, Any]:
    """The property bag of an ``XArgs`` dataclass (shallow: Outputs stay Outputs)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
