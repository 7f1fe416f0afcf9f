"""Text from untrusted files made safe to show: invisible characters visible, values short.

A tenant file may hold any Unicode. Error messages, terminals and reports show
parts of it, and control, bidi and line-separator characters there could hide
or reorder what a reviewer reads. Every output format's escaping
(``tenancy.render.escape``) starts from :func:`plain`; every error message
quotes a value only through :func:`excerpt`.
"""

from __future__ import annotations

import unicodedata

# bidi controls are category Cf, listed anyway: they are the ones that reorder text
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
EXCERPT_CHARS = 40
"""The most characters of a found value an error message quotes."""


def is_invisible(char: str, keep_newlines: bool = False) -> bool:
    """Whether ``char`` changes how text around it shows instead of showing itself."""
    if keep_newlines and char in "\n\t":
        return False
    return char in BIDI or unicodedata.category(char) in _INVISIBLE


def _visible(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, keep_newlines: bool = False) -> str:
    """One line of text (``keep_newlines``: several) with every invisible character shown."""
    text = str(value)
    if text.isprintable():
        return text  # the common case (bidi controls are not printable either)
    return "".join(_visible(c) if is_invisible(c, keep_newlines) else c for c in text)


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """A quoted, escaped start of ``value``: never more than ``limit`` characters of it."""
    if len(value) <= limit:
        return repr(plain(value))
    return f"{plain(value[:limit])!r}… ({len(value)} characters)"
