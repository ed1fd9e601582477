"""Email addresses: the one rule for what the API accepts, and the one normal form it keeps.

Accounts and anonymous privacy requests both take an address, and an email-path request
finds its account by it, so both use :data:`Email`: one pattern, published as is in the
spec and applied by the handler with the same meaning (``fullmatch``, explicit character
ranges: no ``\\s``, whose extent differs between Python and JSON Schema's ECMA regexes, e.g.
on U+0085), then one normal form (:func:`normalise`):

- the whole address in Unicode NFC, so composed and decomposed ``ü`` are one letter;
- the domain casefolded (``BÜCHER.de`` is ``bücher.de``), and each ``xn--`` label read as the
  Unicode it encodes (``xn--bcher-kva.de`` is ``bücher.de`` too);
- the local part as typed (it may be case-sensitive); stores compare it ASCII-case-blind.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

_EXCLUDED = (r"@\u0000-\u0020\u007f-\u00a0\u1680\u180e\u2000-\u200b\u2028\u2029\u202f\u205f"
             r"\u3000\ufeff")
"""Never in an address: ``@`` (but the one), controls C0 and C1 (U+0085 too), and every
space character, listed one by one."""

EMAIL_PATTERN = (rf"^[^{_EXCLUDED}]{{1,64}}@[^{_EXCLUDED}.]{{1,63}}"
                 rf"(\.[^{_EXCLUDED}.]{{1,63}})+$")
MIN_LENGTH = 3
MAX_LENGTH = 254
"""RFC 5321's limit on a path, in characters."""

_EMAIL = re.compile(EMAIL_PATTERN)


def check(text: str) -> str:
    """``text`` if the spec's schema accepts it (length and pattern), else ``ValueError``."""
    if not MIN_LENGTH <= len(text) <= MAX_LENGTH:
        raise ValueError(f"an email address has {MIN_LENGTH} to {MAX_LENGTH} characters")
    if not _EMAIL.fullmatch(text):
        raise ValueError("not an email address (one @, a dotted domain, no spaces or "
                         "control characters)")
    return text


def normalise(text: str) -> str:
    """The normal form of an accepted address (see the module docstring)."""
    local, _, domain = unicodedata.normalize("NFC", text).rpartition("@")
    labels = [_unicode_label(label) for label in domain.split(".")]
    domain = unicodedata.normalize("NFC", ".".join(labels).casefold())
    return f"{local}@{domain}"


def _unicode_label(label: str) -> str:
    if not label.lower().startswith("xn--"):
        return label
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:  # not valid punycode: kept as typed
        return label
    # Punycode can spell anything; what an address may not hold stays encoded.
    return label if _FORBIDDEN_IN_LABEL.search(decoded) else decoded


_FORBIDDEN_IN_LABEL = re.compile(rf"[{_EXCLUDED}.]")


def accept(text: str) -> str:
    """:func:`check`, then :func:`normalise`."""
    return normalise(check(text))


Email = Annotated[
    str,
    AfterValidator(accept),
    WithJsonSchema({"type": "string", "minLength": MIN_LENGTH, "maxLength": MAX_LENGTH,
                    "pattern": EMAIL_PATTERN}),
]
"""A request body field holding an email address: validated as the spec says, normalised."""
