"""Docker image references: parse, normalise, familiarise, validate.

A pure-Python port of the rules in ``github.com/distribution/reference``
(``reference.go``, ``regexp.go``, ``normalize.go``, ``helpers.go``) and of
the digest checks in ``github.com/opencontainers/go-digest`` v1.0.0 (the
version the Docker Engine vendors). Nothing here talks to Docker.

Grammar (distribution/reference)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] remote-name
    domain           := host [":" port-number]
    host             := domain-name | IPv4address | "[" IPv6address "]"
    domain-name      := domain-component ["." domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    port-number      := /[0-9]+/
    remote-name      := path-component ["/" path-component]*      (the "path")
    path-component   := alpha-numeric [separator alpha-numeric]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/                        (ASCII \\w)
    digest           := algorithm ":" hex
    algorithm        := /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*/
    hex              := /[0-9a-fA-F]{32,}/
    identifier       := /[a-f0-9]{64}/                 (an image ID, sha256)

    The remote-name ("path") is at most 255 characters; the domain does not
    count (distribution/reference since 2024, "Exclude domain from name
    length check"). IPv6 addresses are hex and colons only: no zone
    identifiers, no embedded IPv4.

Normalisation (``ParseNormalizedNamed`` / ``splitDockerDomain``):

* A 64-hex string is refused as a name: it is an image ID.
* The text before the first "/" is a registry domain when it is
  ``localhost``, contains "." or ":", or contains an uppercase letter
  (repository paths are lowercase, so ``Foo/bar`` means registry ``Foo``).
  Otherwise the domain is ``docker.io``. A single component ("ubuntu",
  "localhost:5000") never has a domain: it is ``docker.io/library/<it>``
  (Docker's known FIXME: "localhost:5000" is image localhost, tag 5000).
* ``index.docker.io`` becomes ``docker.io``; on ``docker.io`` a one-component
  path gets the ``library/`` prefix.

Supported digest algorithms are sha256, sha384 and sha512 (go-digest
v1.0.0's registered set); image IDs are always sha256.

Deliberate differences from the Go code (stricter, never looser):

* When the first component is taken as a domain but is not a valid host
  (``foo_bar.com/x``), Go silently falls back to a domain-less reference
  whose registry is undefined; we refuse it.
* Where Go says only "invalid reference format", we name the part that is
  wrong when it is clear (``invalid tag format``, the go-digest messages),
  and every message quotes a bounded, escaped copy of what was typed.
* ``familiar()``/``familiar_name`` keep the domain when dropping it would
  make the short form mean something else (``docker.io/a.b/c`` would
  re-parse with domain ``a.b``), so a familiar string always re-parses to
  the same reference.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from typing import Iterable

from .errors import AmbiguousImageId, InvalidReference
from .records import record

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "MIN_ID_PREFIX_LEN",
    "NAME_TOTAL_LENGTH_MAX",
    "REFERENCE_SHAPE",
    "ImageId",
    "Reference",
    "parse_image_arg",
    "parse_normalized",
    "quote_input",
    "resolve_id_prefix",
    "validate_digest",
    "validate_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255  # RepositoryNameTotalLengthMax: the path only

# Hex digits an image-ID prefix needs before a bare hex word is also treated
# as a possible ID (Docker itself accepts any length; one or two characters
# match far too much for a chat command that can delete images).
MIN_ID_PREFIX_LEN = 4

# Hex length per digest algorithm (go-digest v1.0.0 registers these three).
DIGEST_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}

REFERENCE_SHAPE = "[REGISTRY[:PORT]/]NAME[:TAG|@DIGEST]"
_SHAPE_HINT = f"An image reference looks like {REFERENCE_SHAPE}, e.g. ubuntu:22.04 or registry.example.com:5000/team/app@sha256:<64 hex>."

# --------------------------------------------------------------------------
# The grammar as regular expressions. Always used with fullmatch() (never
# "^...$": Python's "$" also matches before a trailing newline), and with
# explicit ASCII classes (Python's \w would accept any Unicode letter).
# --------------------------------------------------------------------------
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REMOTE_NAME_RE = re.compile(_REMOTE_NAME)
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")
# go-digest's own (looser) digest shape, used only to choose between its
# "unsupported digest algorithm" and "invalid checksum digest format".
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

# --------------------------------------------------------------------------
# Safe quoting of user input inside messages.
# --------------------------------------------------------------------------
_QUOTE_LIMIT = 64  # characters of escaped output before the ellipsis
_SUGGESTION_MAX = 120  # a "Try ..." suggestion is grammar-only, but keep hints short
_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    # Non-printables (controls, format characters such as bidi overrides and
    # zero-width spaces, unusual spaces, surrogates, unassigned) and combining
    # marks (which would stack onto the quote character) are shown as escapes.
    if ch.isprintable() and not unicodedata.category(ch).startswith("M"):
        return ch
    cp = ord(ch)
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def quote_input(s: str, limit: int = _QUOTE_LIMIT) -> str:
    """Quote user input for a message: escaped, printable, and bounded.

    Returns ``"..."`` with at most ``limit`` characters of (escaped) content
    and a trailing ``…`` when the input was cut. Emoji and other printable
    Unicode stay readable; controls, zero-width and bidi characters do not
    reach the chat.
    """
    out: list[str] = []
    used = 0
    for ch in s:
        piece = _escape_char(ch)
        if used + len(piece) > limit:
            out.append("…")
            break
        out.append(piece)
        used += len(piece)
    return '"' + "".join(out) + '"'


def _invalid(reason: str, s: str, hint: str | None = None) -> InvalidReference:
    return InvalidReference(f"{reason}: {quote_input(s)}", hint if hint is not None else _SHAPE_HINT)


# --------------------------------------------------------------------------
# Component validators
# --------------------------------------------------------------------------
_TAG_RULES = ("A tag is 1 to 128 letters, digits, underscores, periods and dashes, "
              "and must not start with a period or dash (e.g. 22.04, v1.2.3, latest).")
_DIGEST_RULES = ("A digest is ALGORITHM:HEX with ALGORITHM one of sha256, sha384, sha512 and HEX "
                 "in lowercase, 64/96/128 digits long (e.g. sha256:<64 hex>).")


def _tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a valid tag, or None when it is."""
    return None if _TAG_RE.fullmatch(tag) else "invalid tag format"


def _digest_problem(d: str) -> str | None:
    """Why ``d`` is not a usable digest, in go-digest's words, or None.

    Mirrors reference.Parse (the grammar's digest shape) followed by
    go-digest's Digest.Validate. Where the grammar alone would only say
    "invalid reference format", we report the more precise go-digest reason.
    """
    alg, sep, encoded = d.partition(":")
    if not sep or not alg or not encoded:
        return "invalid checksum digest format"
    expected_len = DIGEST_ALGORITHMS.get(alg)
    if not _DIGEST_RE.fullmatch(d):
        if expected_len and _HEX_RE.fullmatch(encoded) and len(encoded) != expected_len:
            return "invalid checksum digest length"
        return "invalid checksum digest format"
    if expected_len is None:
        if not _GO_DIGEST_RE.fullmatch(d):
            return "invalid checksum digest format"
        return "unsupported digest algorithm"
    if len(encoded) != expected_len:
        return "invalid checksum digest length"
    if not _LOWER_HEX_RE.fullmatch(encoded):
        return "invalid checksum digest format"
    return None


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise InvalidReference."""
    if not isinstance(tag, str) or _tag_problem(tag):
        raise _invalid("invalid tag format", str(tag), _TAG_RULES)
    return tag


def validate_digest(d: str) -> str:
    """Return ``d`` if it is a valid, supported digest, else raise InvalidReference.

    Messages are go-digest's: ``invalid checksum digest format``,
    ``invalid checksum digest length``, ``unsupported digest algorithm``.
    """
    problem = _digest_problem(d) if isinstance(d, str) else "invalid checksum digest format"
    if problem:
        raise _invalid(problem, str(d), _DIGEST_RULES)
    return d


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------
def _looks_like_domain(component: str) -> bool:
    """splitDockerDomain's test for "the first path element is a registry"."""
    return (component == "localhost"
            or "." in component or ":" in component
            or component.lower() != component)


@record
class Reference:
    """A parsed, validated, normalised image reference.

    ``domain`` is the registry ("docker.io", "localhost:5000", "[::1]:5000");
    ``path`` the repository path on it ("library/ubuntu"); ``tag`` and
    ``digest`` are "" when absent. Constructing one directly validates every
    field (and normalises ``index.docker.io`` and the ``library/`` prefix),
    so a Reference never holds anything outside the grammar.
    """

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    def __post_init__(self) -> None:
        for value in (self.domain, self.path, self.tag, self.digest):
            if not isinstance(value, str):
                raise TypeError("Reference fields are strings")
        # Keep every instance in normal form, so equal images compare equal:
        # Reference("index.docker.io", "ubuntu") == parse_normalized("ubuntu").
        if self.domain == LEGACY_DEFAULT_DOMAIN:
            object.__setattr__(self, "domain", DEFAULT_DOMAIN)
        if self.domain == DEFAULT_DOMAIN and "/" not in self.path:
            object.__setattr__(self, "path", OFFICIAL_REPO_PREFIX + self.path)
        if not _DOMAIN_RE.fullmatch(self.domain):
            raise _invalid("invalid reference format", self.domain,
                           f"The registry host is not a valid HOST[:PORT]. {_SHAPE_HINT}")
        if not _REMOTE_NAME_RE.fullmatch(self.path):
            raise _invalid("invalid reference format", self.path, _SHAPE_HINT)
        if len(self.path) > NAME_TOTAL_LENGTH_MAX:
            raise _invalid(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters", self.path)
        if self.tag:
            validate_tag(self.tag)
        if self.digest:
            validate_digest(self.digest)

    # -- names ------------------------------------------------------------
    @property
    def name(self) -> str:
        """Full repository name, e.g. ``docker.io/library/ubuntu``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name as the Docker CLI shows it (reference.FamiliarName).

        ``docker.io/library/ubuntu`` -> ``ubuntu``; ``docker.io/user/repo``
        -> ``user/repo``; other registries keep their domain. The domain is
        also kept when the short form would re-parse differently (its first
        component would look like a registry, or it would be a 64-hex ID).
        """
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
            path = path[len(OFFICIAL_REPO_PREFIX):]
            if _IDENTIFIER_RE.fullmatch(path):
                return self.name  # "<64 hex>" alone would be refused as an ID
            return path
        first = path.split("/", 1)[0]
        if _looks_like_domain(first):
            return self.name  # "a.b/c" would mean registry a.b
        return path

    # -- kinds --------------------------------------------------------------
    @property
    def is_name_only(self) -> bool:
        """Neither tag nor digest (reference.IsNameOnly)."""
        return not self.tag and not self.digest

    @property
    def is_tagged(self) -> bool:
        return bool(self.tag)

    @property
    def is_canonical(self) -> bool:
        """Has a digest, i.e. names immutable content (reference.Canonical)."""
        return bool(self.digest)

    # -- strings ------------------------------------------------------------
    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        """Full form, e.g. ``docker.io/library/ubuntu:22.04``."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """Short form as the Docker CLI prints it (reference.FamiliarString)."""
        return self.familiar_name + self._suffix()

    # -- derived references ---------------------------------------------------
    def with_default_tag(self) -> "Reference":
        """Add the tag ``latest`` when there is neither tag nor digest (TagNameOnly)."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self

    def docker_ref(self) -> "Reference":
        """What the engine pulls (reference.ParseDockerRef): a digest wins
        over a tag, and a bare name gets ``latest``."""
        if self.tag and self.digest:
            return replace(self, tag="")
        return self.with_default_tag()

    def trimmed(self) -> "Reference":
        """Only the repository name, without tag or digest (TrimNamed)."""
        return replace(self, tag="", digest="")


@record
class ImageId:
    """An image ID, whole or abbreviated, as typed for rmi/inspect.

    ``value`` is lowercase hex without ``sha256:``; ``full`` says it is all 64
    digits. An abbreviated ID typed without ``sha256:`` is also a valid
    repository name ("cafe", "1234"); the engine tries the *name* first and
    only then the ID prefix. ``reference`` carries that name reading (the
    parsed reference of exactly what was typed), so a caller can do the same:
    look up ``reference``; if no such image, :func:`resolve_id_prefix`.
    """

    value: str
    full: bool
    reference: Reference | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _LOWER_HEX_RE.fullmatch(self.value):
            raise InvalidReference(f"invalid image ID: {quote_input(str(self.value))}",
                                   "An image ID is lowercase hex, optionally after sha256:.")
        if self.full != (len(self.value) == 64) or len(self.value) > 64:
            raise InvalidReference(f"invalid image ID: {quote_input(self.value)}",
                                   "A full image ID has exactly 64 hex digits.")

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` (a prefix of one when not full)."""
        return f"sha256:{self.value}"

    @property
    def short(self) -> str:
        """The 12-digit form ``docker images`` shows."""
        return self.value[:12]

    def __str__(self) -> str:
        return self.digest if self.full else self.value


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------
def _split_docker_domain(s: str) -> tuple[str | None, str]:
    """(typed domain or None, remainder) per splitDockerDomain's domain test."""
    first, slash, rest = s.partition("/")
    if slash and _looks_like_domain(first):
        return first, rest
    return None, s


def _split_suffixes(remainder: str) -> tuple[str, str | None, str | None]:
    """Split ``path[:tag][@digest]`` (no domain) into its three parts.

    Equivalent to the grammar's capture groups: only the digest may follow
    "@", and a path never contains ":" or "@".
    """
    namepart, at, digest = remainder.partition("@")
    path, colon, tag = namepart.partition(":")
    return path, (tag if colon else None), (digest if at else None)


def _format_hint(s: str, domain: str | None, path: str) -> str:
    """The most useful hint for an "invalid reference format"."""
    if s != s.strip():
        return f"Remove the spaces around the image reference. {_SHAPE_HINT}"
    if any(ch.isspace() for ch in s):
        return f"An image reference contains no spaces. {_SHAPE_HINT}"
    if "://" in s:
        return (f"Leave out the URL scheme: write the registry host directly, e.g. "
                f"registry.example.com/team/app:1.0. {_SHAPE_HINT}")
    if domain is not None and not _DOMAIN_RE.fullmatch(domain):
        return (f"{quote_input(domain, 40)} is read as a registry host, but is not a valid HOST[:PORT] "
                f"(letters, digits, dashes and dots; IPv6 in [brackets]). {_SHAPE_HINT}")
    if not path or path.endswith("/") or "//" in path:
        return f"The repository name is missing or has an empty component. {_SHAPE_HINT}"
    return (f"Repository names use lowercase letters, digits and the separators . _ __ -, "
            f"which may not start or end a component. {_SHAPE_HINT}")


def _lowercase_suggestion(domain: str | None, path: str, tag: str | None, digest: str | None) -> str | None:
    """The input with only its repository path lowercased, if that is valid."""
    suggestion = (f"{domain}/" if domain is not None else "") + path.lower()
    if tag is not None:
        suggestion += ":" + tag
    if digest is not None:
        suggestion += "@" + digest
    try:
        parse_normalized(suggestion)
    except InvalidReference:
        return None
    return suggestion


def parse_normalized(s: str) -> Reference:
    """Parse what a person typed into a full Reference (ParseNormalizedNamed).

    ``ubuntu`` -> docker.io/library/ubuntu (no tag: see
    :meth:`Reference.with_default_tag`); ``user/repo:1`` ->
    docker.io/user/repo:1; ``localhost:5000/x``, ``[::1]:5000/x``,
    ``name@sha256:<64 hex>``, ``name:tag@sha256:<64 hex>``. No whitespace is
    stripped. Raises :class:`InvalidReference` with Docker's wording.
    """
    if not isinstance(s, str):
        raise TypeError(f"image reference must be a string, not {type(s).__name__}")
    if s == "":
        raise InvalidReference("invalid reference format: the image reference is empty (\"\")",
                               f"Give an image name. {_SHAPE_HINT}")
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(
            f"invalid repository name ({quote_input(s)}), cannot specify 64-byte hexadecimal strings",
            "That is an image ID, not a repository name: inspect and rmi accept IDs; "
            "to pull or tag, use a name such as ubuntu:22.04.")

    typed_domain, remainder = _split_docker_domain(s)
    path, tag, digest = _split_suffixes(remainder)

    # Normalise the domain and the Docker Hub "library/" namespace.
    domain = DEFAULT_DOMAIN if typed_domain in (None, LEGACY_DEFAULT_DOMAIN) else typed_domain
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path

    # 1. Syntax, part by part (Go checks the whole string with one regexp and
    #    then says which of "must be lowercase"/"invalid reference format").
    if typed_domain is not None and not _DOMAIN_RE.fullmatch(typed_domain):
        raise _invalid("invalid reference format", s, _format_hint(s, typed_domain, path))
    if not _REMOTE_NAME_RE.fullmatch(path):
        if path.lower() != path and _REMOTE_NAME_RE.fullmatch(path.lower()):
            typed_path = remainder.partition("@")[0].partition(":")[0]
            suggestion = _lowercase_suggestion(typed_domain, typed_path, tag, digest)
            shown = suggestion if suggestion and len(suggestion) <= _SUGGESTION_MAX else None
            hint = (f'Try "{shown}". ' if shown else "") + \
                "Repository names are lowercase (only the registry host and the tag may use capitals)."
            raise _invalid("repository name must be lowercase", s, hint)
        raise _invalid("invalid reference format", s, _format_hint(s, typed_domain, path))
    if tag is not None and _tag_problem(tag):
        raise _invalid("invalid tag format", s, _TAG_RULES)
    if digest is not None and not _DIGEST_RE.fullmatch(digest):
        raise _invalid(_digest_problem(digest) or "invalid checksum digest format", s, _DIGEST_RULES)

    # 2. Length of the repository path (after normalisation, as in Go).
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters", s,
                       f"The repository path (without the registry host) is {len(path)} characters long; shorten it.")

    # 3. Digest semantics (go-digest: known algorithm, exact length, lowercase).
    if digest is not None:
        problem = _digest_problem(digest)
        if problem:
            raise _invalid(problem, s, _DIGEST_RULES)

    return Reference(domain=domain, path=path, tag=tag or "", digest=digest or "")


def parse_image_arg(s: str) -> Reference | ImageId:
    """Parse the image argument of rmi/inspect: an ID, an ID prefix, or a reference.

    * 64 lowercase hex, or ``sha256:`` + 64 hex -> ``ImageId(full=True)``
      (the engine looks these up by ID only, never as a name).
    * Other valid digests (sha384/sha512) -> InvalidReference: image IDs are sha256.
    * Lowercase hex of ``MIN_ID_PREFIX_LEN`` to 63 digits, optionally after
      ``sha256:`` -> ``ImageId(full=False, reference=<name reading>)``: try
      the name first, then the prefix (what the daemon does).
    * Anything else -> the :class:`Reference` from :func:`parse_normalized`.
    """
    if not isinstance(s, str):
        raise TypeError(f"image argument must be a string, not {type(s).__name__}")
    hex_part = s[len("sha256:"):] if s.startswith("sha256:") else s
    if _IDENTIFIER_RE.fullmatch(hex_part):
        return ImageId(hex_part, full=True)
    alg, sep, _ = s.partition(":")
    if sep and alg in DIGEST_ALGORITHMS and alg != "sha256" and _digest_problem(s) is None:
        raise _invalid("unsupported digest algorithm", s,
                       "Image IDs are sha256:<64 hex> (or a prefix of the hex); "
                       "a sha384/sha512 digest can only follow a name, as NAME@DIGEST.")
    ref = parse_normalized(s)
    if MIN_ID_PREFIX_LEN <= len(hex_part) < 64 and _LOWER_HEX_RE.fullmatch(hex_part):
        return ImageId(hex_part, full=False, reference=ref)
    return ref


def resolve_id_prefix(prefix: str, ids: Iterable[str]) -> str | None:
    """The one image ID in ``ids`` that starts with ``prefix``, or None.

    ``prefix`` and the ``ids`` may each carry ``sha256:``; hex compares
    case-insensitively. The matching ID is returned exactly as it appears in
    ``ids``. Duplicates of one ID count once. Raises
    :class:`~handlers.errors.AmbiguousImageId` when several distinct images
    match, and InvalidReference for a prefix that is not hex.
    """
    p = prefix[len("sha256:"):] if prefix.startswith("sha256:") else prefix
    if not p or len(p) > 64 or not _HEX_RE.fullmatch(p):
        raise _invalid("invalid image ID prefix", prefix,
                       "An image ID is hex digits, optionally after sha256: (see `docker images`).")
    p = p.lower()
    matches: dict[str, str] = {}
    for full in ids:
        h = (full[len("sha256:"):] if full.startswith("sha256:") else full).lower()
        if h.startswith(p):
            matches.setdefault(h, full)
    if not matches:
        return None
    if len(matches) > 1:
        raise AmbiguousImageId(f'ambiguous image ID prefix "{p}": matches {len(matches)} images')
    return next(iter(matches.values()))
