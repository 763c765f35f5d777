"""Property tests for handlers.refs (hypothesis).

(a) references generated from the grammar parse, normalise as Docker does,
    and round-trip through str() and familiar();
(b) hostile input never raises anything but InvalidReference, and whatever
    does parse is made only of grammar characters (checked against a regexp
    written here, independently of the module);
(c) messages and hints are bounded and printable.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from handlers.errors import AmbiguousImageId, InvalidReference
from handlers.refs import (
    ImageId,
    Reference,
    parse_image_arg,
    parse_normalized,
    quote_input,
    resolve_id_prefix,
)

# ---------------------------------------------------------------------------
# An independent transcription of distribution/reference's ReferenceRegexp,
# used as the oracle for "only grammatical strings get through".
# ---------------------------------------------------------------------------
_comp = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_dcomp = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_domain = rf"(?:{_dcomp}(?:\.{_dcomp})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
ORACLE = re.compile(
    rf"(?:{_domain}/)?{_comp}(?:/{_comp})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)
GRAMMAR_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/@[]+")
HEX64 = re.compile(r"[a-f0-9]{64}")

MESSAGE_MAX = 300
HINT_MAX = 500

# ---------------------------------------------------------------------------
# (a) Valid references, built from the grammar
# ---------------------------------------------------------------------------
LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
DOMAIN_CHARS = LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

alnum = st.text(LOWER_ALNUM, min_size=1, max_size=8)
separator = st.one_of(st.sampled_from([".", "_", "__"]), st.integers(1, 3).map(lambda n: "-" * n))


@st.composite
def path_component(draw):
    parts = [draw(alnum)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(separator), draw(alnum)]
    return "".join(parts)


@st.composite
def domain_component(draw):
    first = draw(st.sampled_from(DOMAIN_CHARS))
    if draw(st.booleans()):
        return first
    middle = draw(st.text(DOMAIN_CHARS + "-", max_size=10))
    return first + middle + draw(st.sampled_from(DOMAIN_CHARS))


@st.composite
def hostname(draw):
    return ".".join(draw(st.lists(domain_component(), min_size=1, max_size=4)))


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.one_of(
    st.ip_addresses(v=6).map(lambda a: a.compressed).filter(lambda s: "." not in s and "%" not in s),
    st.text("0123456789abcdefABCDEF:", min_size=1, max_size=20),  # the grammar is just [a-fA-F0-9:]+
).map(lambda s: f"[{s}]")
port = st.one_of(st.integers(0, 65535).map(str), st.text("0123456789", min_size=1, max_size=6))


@st.composite
def registry(draw):
    """A first component that Docker treats as a registry domain."""
    kind = draw(st.sampled_from(["host", "ipv4", "ipv6", "localhost", "hub"]))
    if kind == "hub":
        return draw(st.sampled_from(["docker.io", "index.docker.io"]))
    host = {"host": hostname, "ipv4": lambda: ipv4, "ipv6": lambda: ipv6,
            "localhost": lambda: st.just("localhost")}[kind]()
    host = draw(host)
    if draw(st.booleans()):
        host += ":" + draw(port)
    # splitDockerDomain: localhost, or contains "." or ":", or uppercase.
    assume(host == "localhost" or "." in host or ":" in host or host.lower() != host)
    return host


tag = st.tuples(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"),
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", max_size=127),
).map("".join)
digest = st.sampled_from([("sha256", 64), ("sha384", 96), ("sha512", 128)]).flatmap(
    lambda a: st.text("0123456789abcdef", min_size=a[1], max_size=a[1]).map(lambda h: f"{a[0]}:{h}"))


@st.composite
def reference_parts(draw):
    """(typed domain or None, typed path, tag or None, digest or None)."""
    domain = draw(st.one_of(st.none(), registry()))
    comps = draw(st.lists(path_component(), min_size=1, max_size=4))
    if domain is None and len(comps) > 1:
        # Otherwise the first component would be read as a registry.
        assume("." not in comps[0] and comps[0] != "localhost")
    return domain, "/".join(comps), draw(st.one_of(st.none(), tag)), draw(st.one_of(st.none(), digest))


def join_parts(domain, path, t, d) -> str:
    return (f"{domain}/" if domain else "") + path + (f":{t}" if t is not None else "") + (f"@{d}" if d else "")


@st.composite
def valid_reference(draw):
    """(typed string, expected Reference fields) built from the grammar."""
    domain, path, t, d = draw(reference_parts())
    text = join_parts(domain, path, t, d)
    assume(not HEX64.fullmatch(text))
    exp_domain = "docker.io" if domain in (None, "index.docker.io") else domain
    exp_path = f"library/{path}" if exp_domain == "docker.io" and "/" not in path else path
    assume(len(exp_path) <= 255)
    return text, (exp_domain, exp_path, t or "", d or "")


@settings(max_examples=400, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(valid_reference())
def test_valid_references_parse_and_round_trip(case):
    text, expected = case
    ref = parse_normalized(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == expected
    full = str(ref)
    assert ORACLE.fullmatch(full)
    assert parse_normalized(full) == ref
    assert str(parse_normalized(full)) == full  # normalisation is idempotent
    assert parse_normalized(ref.familiar()) == ref
    assert ref.familiar().startswith(ref.familiar_name)
    assert Reference(*expected) == ref
    # TagNameOnly
    defaulted = ref.with_default_tag()
    if ref.tag or ref.digest:
        assert defaulted == ref
    else:
        assert defaulted.tag == "latest" and parse_normalized(str(defaulted)) == defaulted


@settings(max_examples=200, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(valid_reference())
def test_valid_references_as_image_args(case):
    text, expected = case
    arg = parse_image_arg(text)
    ref = arg.reference if isinstance(arg, ImageId) else arg
    assert isinstance(ref, Reference)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(reference_parts(), st.data())
def test_uppercase_in_the_path_is_reported_with_a_working_suggestion(parts, data):
    domain, path, t, d = parts
    letters = [i for i, c in enumerate(path) if c.isalpha()]
    assume(letters)
    i = data.draw(st.sampled_from(letters))
    bad_path = path[:i] + path[i].upper() + path[i + 1:]
    good, bad = join_parts(domain, path, t, d), join_parts(domain, bad_path, t, d)
    try:
        expected = parse_normalized(good)
    except InvalidReference:
        assume(False)  # e.g. too long once "library/" is added
    try:
        got = parse_normalized(bad)
    except InvalidReference as e:
        check_error(e)
        if domain is None and "/" in path and i < path.index("/"):
            return  # the upper-cased first component was read as a (bad) registry host
        assert e.message.startswith("repository name must be lowercase: "), e.message
        suggestion = re.search(r'Try "([^"]*)"', e.hint)
        if len(good) <= 120:
            assert suggestion and parse_normalized(suggestion.group(1)) == expected
    else:
        # Only possible when the upper-cased first component became a registry
        # (Docker's rule: uppercase means domain); still grammatical.
        assert domain is None and i < path.index("/")
        assert got.domain == bad_path.split("/")[0]
        assert ORACLE.fullmatch(str(got))


# ---------------------------------------------------------------------------
# (b) + (c) Hostile input
# ---------------------------------------------------------------------------
SHELL = list(";|&$()`<>\\*?!#~{}=%^")
QUOTES = list("'\"`\u2018\u2019\u201c\u201d")
SPACE = list(" \t\n\r\v\f\u00a0\u2028\u2029\u3000\u1680")
CONTROL = [chr(c) for c in range(0, 32)] + ["\x7f", "\x85", "\x9b"]
RTL_ZW = list("\u202e\u202d\u200f\u200e\u2066\u2067\u2069\u061c\u05d0\u0627"
              "\u200b\u200c\u200d\u2060\ufeff\u00ad")
EMOJI = ["😀", "🐳", "👩‍💻", "🇺🇳", "\U000e0041", "\ufe0f"]
FULLWIDTH = list("ｕｂｕｎｔｕＵ：／＠．－＿０１")
COMBINING = list("\u0301\u0336\u20dd")
GRAMMAR = list("abcxyz019ABZ._-:/@[]+")
SURROGATE = ["\ud800", "\udfff"]
HOSTILE_ALPHABET = SHELL + QUOTES + SPACE + CONTROL + RTL_ZW + EMOJI + FULLWIDTH + COMBINING + GRAMMAR + SURROGATE

hostile_char = st.sampled_from(HOSTILE_ALPHABET)
hostile_text = st.lists(hostile_char, max_size=40).map("".join)
long_text = st.tuples(st.lists(hostile_char, min_size=1, max_size=12).map("".join),
                      st.sampled_from([300, 1000, 10_000])).map(lambda t: (t[0] * t[1])[: t[1]])


@st.composite
def mutated_reference(draw):
    """A valid reference with hostile characters inserted or appended."""
    text, _ = draw(valid_reference())
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.one_of(hostile_char, st.sampled_from(
            ["; rm -rf /", "$(reboot)", "`id`", "&& curl x|sh", "\n--force", " ", "\0"]))) + text[i:]
    return text


hostile = st.one_of(
    st.text(),  # any Unicode
    hostile_text,
    long_text,
    mutated_reference(),
    st.tuples(valid_reference(), st.sampled_from([300, 10_000])).map(
        lambda t: t[0][0] + "a" * t[1]),  # valid prefix, very long tail
    st.tuples(st.sampled_from(["a.io/", "ubuntu:", "ubuntu@sha256:", "[", "a" * 64]),
              st.sampled_from(["a", "f", "-", ".", ":", "/", "0"]), st.sampled_from([1000, 10_000])).map(
        lambda t: t[0] + t[1] * t[2]),
)


def check_error(e: InvalidReference) -> None:
    assert isinstance(e.message, str) and isinstance(e.hint, str)
    assert 0 < len(e.message) < MESSAGE_MAX, len(e.message)
    assert e.message.isprintable(), e.message
    assert 0 < len(e.hint) < HINT_MAX, len(e.hint)
    assert e.hint.isprintable(), e.hint
    assert str(e) == e.message  # no repr / raw input in the exception text


def check_accepted(text: str, ref: Reference) -> None:
    # Parsing is exact: no stripping, no Unicode folding, so the typed text
    # and the normalised result are both grammar-only.
    assert set(text) <= GRAMMAR_CHARS, text
    assert ORACLE.fullmatch(text), text
    full = str(ref)
    assert set(full) <= GRAMMAR_CHARS and ORACLE.fullmatch(full), full
    for part in (ref.domain, ref.path, ref.tag, ref.digest, ref.familiar()):
        assert part.isascii() and part.isprintable()
    assert parse_normalized(full) == ref


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(hostile)
@example("")
@example("ubuntu;rm -rf /")
@example("ubuntu\n")
@example("ubuntu\x00")
@example("\u202eutnubu")
@example("ｕｂｕｎｔｕ")
@example("ubuntu:lat\u200best")
@example("x" * 10_000)
@example("\x00" * 10_000)
@example("😀" * 10_000)
@example("a" * 64)
def test_parse_normalized_hostile(text):
    try:
        ref = parse_normalized(text)
    except InvalidReference as e:
        check_error(e)
    else:
        check_accepted(text, ref)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(hostile)
@example("sha256:" + "a" * 64)
@example("sha256:" + "A" * 64)
@example("sha512:" + "a" * 128)
@example("cafe\u200b")
@example("ｃａｆｅ")
def test_parse_image_arg_hostile(text):
    try:
        arg = parse_image_arg(text)
    except InvalidReference as e:
        check_error(e)
        return
    assert set(text) <= GRAMMAR_CHARS
    if isinstance(arg, ImageId):
        assert re.fullmatch(r"[a-f0-9]{1,64}", arg.value)
        assert arg.full == (len(arg.value) == 64)
        assert re.fullmatch(r"(sha256:)?[a-f0-9]{1,64}", str(arg))
        if arg.reference is not None:
            check_accepted(text, arg.reference)
        else:
            assert arg.full
    else:
        check_accepted(text, arg)


@settings(max_examples=300, deadline=None)
@given(hostile, st.lists(st.text("0123456789abcdef", min_size=64, max_size=64), max_size=8))
def test_resolve_id_prefix_hostile(prefix, ids):
    ids = ["sha256:" + i for i in ids]
    try:
        got = resolve_id_prefix(prefix, ids)
    except AmbiguousImageId as e:
        assert len(e.message) < MESSAGE_MAX and e.message.isprintable()
    except InvalidReference as e:
        check_error(e)
    else:
        assert got is None or got in ids


@given(st.lists(st.text("0123456789abcdef", min_size=64, max_size=64), min_size=1, max_size=20, unique=True),
       st.integers(1, 64), st.data())
def test_resolve_id_prefix_matches_a_brute_force_model(ids, length, data):
    full = data.draw(st.sampled_from(ids))
    prefix = full[:length]
    matching = [i for i in ids if i.startswith(prefix)]
    if len(matching) == 1:
        assert resolve_id_prefix(prefix, ["sha256:" + i for i in ids]) == "sha256:" + full
    else:
        try:
            resolve_id_prefix(prefix, ids)
        except AmbiguousImageId as e:
            assert e.message == f'ambiguous image ID prefix "{prefix}": matches {len(matching)} images'
        else:
            raise AssertionError("expected AmbiguousImageId")


@given(st.one_of(st.text(), long_text, hostile_text))
def test_quote_input_is_bounded_and_printable(text):
    q = quote_input(text)
    assert q.isprintable()
    assert len(q) <= 64 + 3
    assert q.startswith('"') and q.endswith('"')
    if len(text) <= 64 and all(c.isascii() and c.isprintable() and c not in '"\\' for c in text):
        assert q == f'"{text}"'  # ordinary input is shown as typed
