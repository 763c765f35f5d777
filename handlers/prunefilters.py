"""``docker image prune --filter`` values, read exactly as the Docker daemon reads them.

The daemon (20.10, ``daemon/images/image_prune.go``) accepts ``until``,
``label``, ``label!`` and ``dangling``. This module reproduces how it
interprets ``until`` and the label filters, so Dockhand can show what a prune
would remove before anything is removed:

* :func:`go_duration` / :func:`go_duration_ns` follow Go's ``time.ParseDuration``.
* :func:`until_timestamp` / :func:`until_cutoff` follow moby's
  ``GetTimestamp(value, time.Now())`` followed by ``ParseTimestamps`` and
  ``time.Unix`` (``api/types/time/timestamp.go``), including the parts of Go's
  ``time.Parse`` those layouts exercise.
* :func:`check_until` follows ``getUntilFromPruneFilters``.
* :func:`match_kv_list` / :func:`match_labels` follow ``filters.Args.MatchKVList``
  and ``matchLabels``.

Go works on the UTF-8 bytes of a string; so does this port. Behaviour follows
current Go (1.20+: fractional seconds beyond nine digits are truncated, a
comma is accepted as the decimal separator after the seconds, zone offsets up
to +24:60 are accepted). Notable consequences, all deliberate:

* ``until=0`` is the Unix epoch, but ``until=0s``, ``-0`` and ``+0`` are *now*.
* Durations are subtracted from now and truncated to whole seconds
  (``Time.Unix()``): ``-1h`` is an hour in the future.
* ``until=2024`` is a Unix timestamp (2024 seconds after the epoch), not a year.
* Dates without a zone use the daemon's *current* UTC offset, whatever the
  offset was on that date (``time.FixedZone(reference.Zone())``).
* An image is pruned when its Created time is *not after* the cutoff
  (``!img.Created.After(until)``), i.e. ``created <= cutoff``.
* A cutoff equal to Go's zero time (``0001-01-01T00:00:00Z``) disables the
  filter (``until.IsZero()``): :func:`check_until` returns ``None`` then.
* Filter values are sets on the daemon side: ``until=24h`` given twice is one
  value, not "more than one until filter".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction

from .errors import UsageError

__all__ = [
    "UNTIL_HINT",
    "check_until",
    "go_duration",
    "go_duration_ns",
    "match_kv_list",
    "match_labels",
    "parse_label_values",
    "passes_until",
    "until_cutoff",
    "until_timestamp",
]

UNTIL_HINT = ("until takes a Go duration (24h, 1h30m, -1h), a date or time "
              "(2024-01-01, 2024-01-01T15:04:05Z, RFC 3339) or a Unix timestamp (1700000000). "
              "Dates and times without a zone are in the daemon's time zone.")

LABEL_HINT = ("Give a label key, optionally with a value: label=maintainer or "
              "label=com.example.tier=dev; label!=KEY[=VALUE] keeps images with that label.")

_NS = 1_000_000_000
_TWO63 = 1 << 63
_INT64_MIN = -_TWO63
_INT64_MAX = _TWO63 - 1
_MASK64 = (1 << 64) - 1
# Go's unixToInternal: a time.Time keeps int64 seconds since January 1, year 1.
_UNIX_TO_INTERNAL = 62135596800
# time.Time{}.Unix(): January 1, year 1, 00:00:00 UTC.
_GO_ZERO_TIME_UNIX = -_UNIX_TO_INTERNAL


class _GoError(Exception):
    """An error text exactly as the Go code would produce it."""


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _go_quote(s: bytes) -> str:
    """Go's ``time.quote``: non-ASCII and control bytes as ``\\xNN``."""
    out = ['"']
    for c in s:
        if c >= 0x80 or c < 0x20:
            out.append(f"\\x{c:02x}")
        elif c in (0x22, 0x5C):  # " and \
            out.append("\\" + chr(c))
        else:
            out.append(chr(c))
    out.append('"')
    return "".join(out)


def _strconv_quote(s: str) -> str:
    """Go's ``%q`` (``strconv.Quote``), close enough for printable input."""
    special = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}
    out = ['"']
    for ch in s:
        if ch in special:
            out.append(special[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _isdigit(s: bytes, i: int) -> bool:
    return i < len(s) and 0x30 <= s[i] <= 0x39


# --------------------------------------------------------------------------
# time.ParseDuration


_UNIT_NS = {
    b"ns": 1,
    b"us": 1_000,
    "\u00b5s".encode(): 1_000,  # µs, micro sign
    "\u03bcs".encode(): 1_000,  # μs, Greek small letter mu
    b"ms": 1_000_000,
    b"s": _NS,
    b"m": 60 * _NS,
    b"h": 3600 * _NS,
}


def _leading_int(s: bytes) -> tuple[int, bytes]:
    """Go's ``leadingInt``: the leading [0-9]* as a uint64; OverflowError past 1<<63."""
    x = 0
    i = 0
    while i < len(s) and 0x30 <= s[i] <= 0x39:
        if x > _TWO63 // 10:
            raise OverflowError
        x = x * 10 + s[i] - 0x30
        if x > _TWO63:
            raise OverflowError
        i += 1
    return x, s[i:]


def _leading_fraction(s: bytes) -> tuple[int, float, bytes]:
    """Go's ``leadingFraction``: digits after the point; stops gaining precision on overflow."""
    x = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(s) and 0x30 <= s[i] <= 0x39:
        if not overflow:
            if x > (_TWO63 - 1) // 10:
                overflow = True
            else:
                y = x * 10 + s[i] - 0x30
                if y > _TWO63:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def go_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration`` as a whole number of nanoseconds (int64 range).

    Raises :class:`ValueError` with Go's own message.
    """
    orig = _b(text)
    s = orig

    def invalid() -> ValueError:
        return ValueError("time: invalid duration " + _go_quote(orig))

    neg = False
    if s and s[0] in b"-+":
        neg = s[0] == 0x2D
        s = s[1:]
    if s == b"0":
        return 0
    if not s:
        raise invalid()
    d = 0  # uint64
    while s:
        f = 0
        scale = 1.0
        if not (s[0] == 0x2E or 0x30 <= s[0] <= 0x39):
            raise invalid()
        before = len(s)
        try:
            v, s = _leading_int(s)
        except OverflowError:
            raise invalid() from None
        pre = before != len(s)
        post = False
        if s and s[0] == 0x2E:
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            raise invalid()  # no digits, e.g. ".s"
        i = 0
        while i < len(s) and not (s[i] == 0x2E or 0x30 <= s[i] <= 0x39):
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + _go_quote(orig))
        u, s = s[:i], s[i:]
        unit = _UNIT_NS.get(u)
        if unit is None:
            raise ValueError("time: unknown unit " + _go_quote(u) + " in duration " + _go_quote(orig))
        if v > _TWO63 // unit:
            raise invalid()
        v *= unit
        if f > 0:
            # Go goes through float64 here, and so may be off by a nanosecond.
            v += int(float(f) * (float(unit) / scale))
            if v > _TWO63:
                raise invalid()
        d = (d + v) & _MASK64  # uint64 arithmetic, wrap-around included
        if d > _TWO63:
            raise invalid()
    if neg:
        return -d  # -Duration(d); d == 1<<63 gives the int64 minimum
    if d > _INT64_MAX:
        raise invalid()
    return d


def go_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds: ``"1h30m"`` → 5400.0, ``"-1h"`` → -3600.0.

    Raises :class:`ValueError` with Go's message ("time: invalid duration ...",
    "time: missing unit in duration ...", "time: unknown unit ... in duration ...").
    """
    return go_duration_ns(text) / _NS


# --------------------------------------------------------------------------
# time.Parse, for the layouts GetTimestamp uses

_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"
_RFC3339_LOCAL = "2006-01-02T15:04:05"
_RFC3339_NANO_LOCAL = "2006-01-02T15:04:05.999999999"
_DATE_WITH_ZONE = "2006-01-02Z07:00"
_DATE_LOCAL = "2006-01-02"

_YEAR, _MONTH, _DAY, _HOUR, _MINUTE, _SECOND, _FRAC9, _ZONE = range(8)
# Only the layout elements GetTimestamp's layouts contain; the rest is literal.
_ELEMENTS = ((b"2006", _YEAR), (b"Z07:00", _ZONE), (b".999999999", _FRAC9), (b"01", _MONTH),
             (b"02", _DAY), (b"04", _MINUTE), (b"05", _SECOND), (b"15", _HOUR))


def _chunks(layout: bytes) -> list[tuple[bytes, int | None, bytes]]:
    """The layout as Go's nextStdChunk walks it: (literal prefix, element, element text)."""
    chunks = []
    literal = b""
    i = 0
    while i < len(layout):
        for text, element in _ELEMENTS:
            if layout.startswith(text, i):
                chunks.append((literal, element, text))
                literal = b""
                i += len(text)
                break
        else:
            literal += layout[i:i + 1]
            i += 1
    chunks.append((literal, None, b""))
    return chunks


def _getnum(s: bytes, fixed: bool) -> tuple[int, bytes, bool]:
    """Go's ``getnum``: one or two digits (exactly two when fixed). Returns (n, rest, bad)."""
    if not _isdigit(s, 0):
        return 0, s, True
    if not _isdigit(s, 1):
        if fixed:
            return 0, s, True
        return s[0] - 0x30, s[1:], False
    return (s[0] - 0x30) * 10 + s[1] - 0x30, s[2:], False


def _atoi(s: bytes) -> tuple[int, bool]:
    """Go's ``time.atoi``: optional sign, then digits only. Returns (n, bad)."""
    neg = False
    if s and s[0] in b"-+":
        neg = s[0] == 0x2D
        s = s[1:]
    try:
        q, rem = _leading_int(s)
    except OverflowError:
        return 0, True
    if rem:
        return 0, True
    if q >= _TWO63:
        q -= 1 << 64  # int(uint64)
    return (-q if neg else q), False


def _parse_nanoseconds(value: bytes, nbytes: int) -> tuple[int, str, bool]:
    """Go's ``parseNanoseconds``: separator plus digits, truncated to nine digits."""
    if value[0] not in b".,":
        return 0, "", True
    if nbytes > 10:
        nbytes = 10
    ns, bad = _atoi(value[1:nbytes])
    if bad:
        return 0, "", True
    if ns < 0:
        return ns, "fractional second", False
    return ns * 10 ** (10 - nbytes), "", False


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (year 0 included)."""
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _parse_time(layout: str, text: str, default_offset: int) -> tuple[int, int]:
    """Go's ``time.Parse``/``ParseInLocation`` for one of GetTimestamp's layouts.

    Returns (Unix seconds, nanoseconds). ``default_offset`` is the zone for a
    value without a zone (UTC for Parse, the FixedZone for ParseInLocation).
    Raises :class:`_GoError` with Go's ParseError text.
    """
    alayout = layout.encode()
    avalue = value = _b(text)

    def cannot(layout_elem: bytes, value_elem: bytes) -> _GoError:
        return _GoError(f"parsing time {_go_quote(avalue)} as {_go_quote(alayout)}: "
                        f"cannot parse {_go_quote(value_elem)} as {_go_quote(layout_elem)}")

    def message(msg: str) -> _GoError:
        return _GoError(f"parsing time {_go_quote(avalue)}{msg}")

    year = 0
    month = day = -1
    hour = minute = sec = nsec = 0
    utc = False
    zone_offset: int | None = None
    chunks = _chunks(alayout)
    for index, (prefix, element, element_text) in enumerate(chunks):
        for ch in prefix:  # Go's skip(); no spaces in these layouts
            if not value or value[0] != ch:
                raise cannot(prefix, value)
            value = value[1:]
        if element is None:
            if value:
                raise message(": extra text: " + _go_quote(value))
            break
        hold = value
        bad = False
        range_err = ""
        if element == _YEAR:
            if len(value) < 4 or not _isdigit(value, 0):
                bad = True
            else:
                p, value = value[:4], value[4:]
                year, bad = _atoi(p)
        elif element == _MONTH:
            month, value, bad = _getnum(value, True)
            if not bad and not 1 <= month <= 12:
                range_err = "month"
        elif element == _DAY:
            day, value, bad = _getnum(value, True)
        elif element == _HOUR:
            hour, value, bad = _getnum(value, False)  # "15" takes one digit too
            if not 0 <= hour < 24:
                range_err = "hour"
        elif element == _MINUTE:
            minute, value, bad = _getnum(value, True)
            if not 0 <= minute < 60:
                range_err = "minute"
        elif element == _SECOND:
            sec, value, bad = _getnum(value, True)
            if not bad:
                if not 0 <= sec < 60:
                    range_err = "second"
                elif len(value) >= 2 and value[0] in b".," and _isdigit(value, 1) \
                        and chunks[index + 1][1] != _FRAC9:
                    # A fraction the layout does not ask for is still accepted.
                    n = 2
                    while _isdigit(value, n):
                        n += 1
                    nsec, range_err, bad = _parse_nanoseconds(value, n)
                    value = value[n:]
        elif element == _FRAC9:
            if len(value) >= 2 and value[0] in b".," and _isdigit(value, 1):
                i = 0
                while _isdigit(value, i + 1):
                    i += 1
                nsec, range_err, bad = _parse_nanoseconds(value, 1 + i)
                value = value[1 + i:]
        elif element == _ZONE:
            if value[:1] == b"Z":
                value = value[1:]
                utc = True
            elif len(value) < 6 or value[3] != 0x3A:
                bad = True
            else:
                sign, hh, mm, value = value[0], value[1:3], value[4:6], value[6:]
                hr, _, bad = _getnum(hh, True)
                mins = 0
                if not bad:
                    mins, _, bad = _getnum(mm, True)
                if hr > 24:
                    range_err = "time zone offset hour"
                if mins > 60:
                    range_err = "time zone offset minute"
                zone_offset = (hr * 60 + mins) * 60
                if sign == 0x2D:
                    zone_offset = -zone_offset
                elif sign != 0x2B:
                    bad = True
        if range_err:
            raise message(f": {range_err} out of range")
        if bad:
            raise cannot(element_text, hold)

    if month < 0:
        month = 1
    if day < 0:
        day = 1
    if day < 1 or day > _days_in(month, year):
        raise message(": day out of range")
    wall = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec
    if utc:
        offset = 0
    elif zone_offset is not None:
        offset = zone_offset
    else:
        offset = default_offset
    return wall - offset, nsec


# --------------------------------------------------------------------------
# moby api/types/time: GetTimestamp + ParseTimestamps


def _parse_int64(s: str) -> int:
    """``strconv.ParseInt(s, 10, 64)``: optional sign, ASCII digits, int64 range."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or any(c not in "0123456789" for c in body):
        raise ValueError(f"strconv.ParseInt: parsing {_strconv_quote(s)}: invalid syntax")
    digits = body.lstrip("0") or "0"
    if len(digits) > 19:
        raise ValueError(f"strconv.ParseInt: parsing {_strconv_quote(s)}: value out of range")
    n = int(digits)
    if s[0] == "-":
        n = -n
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise ValueError(f"strconv.ParseInt: parsing {_strconv_quote(s)}: value out of range")
    return n


def _go_pow10(e: int) -> float:
    """``math.Pow(10, e)`` for the exponents parseTimestamp uses.

    Go's result is exact for e >= 0 here and the correctly rounded 1/10**-e
    for -22 <= e < 0. Below that the product it scales (an int64 over more
    than 31 digits) truncates to 0 whatever the last bits are.
    """
    if e >= 0:
        return float(10 ** e)
    if e >= -22:
        return 1.0 / float(10 ** -e)
    return 0.0


def _parse_timestamp(value: str) -> tuple[int, int]:
    """moby's ``parseTimestamp``: "seconds[.fraction]", fraction scaled to ns through float64."""
    s, dot, n = value.partition(".")
    sec = _parse_int64(s)
    if not dot:
        return sec, 0
    raw = _parse_int64(n)
    return sec, int(float(raw) * _go_pow10(9 - len(_b(n))))


def _now_ns(now: float) -> int:
    return round(Fraction(now) * _NS)


def _get_timestamp(value: str, now_ns: int, utc_offset_seconds: int) -> tuple[int, int]:
    """GetTimestamp followed by ParseTimestamps: (seconds, nanoseconds) or :class:`_GoError`."""
    try:
        d = go_duration_ns(value)
    except ValueError:
        d = None
    if d is not None and value != "0":
        minus_d = -d if d != _INT64_MIN else d  # int64 negation wraps
        return (now_ns + minus_d) // _NS, 0  # reference.Add(-d).Unix(): whole seconds, floored

    # A z, Z or + or exactly three dashes: the value carries a zone (Parse);
    # otherwise it is read in the daemon's zone (ParseInLocation).
    in_location = not any(c in value for c in "zZ+") and value.count("-") != 3
    if "." in value:
        layout = _RFC3339_NANO_LOCAL if in_location else _RFC3339_NANO
    elif "T" in value:
        tcolons = value.count(":")
        if not in_location and not any(c in value for c in "zZ") and tcolons > 0:
            tcolons -= 1  # the colon of a +hh:mm / -hh:mm offset
        if in_location:
            layout = {0: "2006-01-02T15", 1: "2006-01-02T15:04"}.get(tcolons, _RFC3339_LOCAL)
        else:
            layout = {0: "2006-01-02T15Z07:00", 1: "2006-01-02T15:04Z07:00"}.get(tcolons, _RFC3339)
    elif in_location:
        layout = _DATE_LOCAL
    else:
        layout = _DATE_WITH_ZONE

    try:
        return _parse_time(layout, value, utc_offset_seconds if in_location else 0)
    except _GoError:
        if "-" in value:
            raise  # looked like a date: the parser's error stands
        try:
            return _parse_timestamp(value)
        except ValueError:
            raise _GoError(f"failed to parse value as time or duration: {_strconv_quote(value)}") from None


def until_timestamp(value: str, now: float, utc_offset_seconds: int = 0) -> tuple[int, int]:
    """The daemon's ``until`` time for one value, exactly: (Unix seconds, nanoseconds 0..999999999).

    The seconds are the instant the daemon compares against, so a Unix
    timestamp too large for Go's ``time.Time`` comes back wrapped around, as
    the daemon sees it.

    ``now`` is the daemon's current Unix time; ``utc_offset_seconds`` its zone's
    current UTC offset (east positive), used for dates and times without a zone.
    Raises :class:`UsageError` naming the value, with :data:`UNTIL_HINT`.
    """
    try:
        sec, nsec = _get_timestamp(value, _now_ns(now), utc_offset_seconds)
    except _GoError as e:
        raise UsageError(f"invalid value for 'until' filter: {e}", UNTIL_HINT) from None
    extra, nsec = divmod(nsec, _NS)  # time.Unix normalises the nanoseconds
    # time.Unix stores sec + unixToInternal in an int64, and After compares
    # that: past year 292277026596 it wraps to the far past (nothing is pruned).
    internal = ((sec + extra + _UNIX_TO_INTERNAL + _TWO63) & _MASK64) - _TWO63
    return internal - _UNIX_TO_INTERNAL, nsec


def until_cutoff(value: str, now: float, utc_offset_seconds: int = 0) -> float:
    """The ``until`` cutoff as a Unix time: images created at or before it are pruned.

    ``"24h"`` → ``now - 86400`` truncated to a whole second; ``"-1h"`` → an hour
    ahead; ``"0"`` → 0.0; ``"2024-01-01"`` → midnight at ``utc_offset_seconds``;
    ``"2024-01-01T15:04:05.5+02:00"``; ``"1700000000.5"``. Float precision is
    whatever a float holds; use :func:`until_timestamp` for the exact value.
    """
    sec, nsec = until_timestamp(value, now, utc_offset_seconds)
    return sec + nsec / _NS


def check_until(values: Iterable[str], now: float, utc_offset_seconds: int = 0) -> float | None:
    """``getUntilFromPruneFilters``: ``None`` when there is no until filter (or it is Go's zero time).

    Values are a set on the daemon, so repeating the same value is allowed;
    two different values are refused like the daemon refuses them.
    """
    distinct = list(dict.fromkeys(values))
    if not distinct:
        return None
    if len(distinct) > 1:
        raise UsageError("more than one until filter specified",
                         "Give until once. " + UNTIL_HINT)
    sec, nsec = until_timestamp(distinct[0], now, utc_offset_seconds)
    if sec == _GO_ZERO_TIME_UNIX and nsec == 0:
        return None  # until.IsZero(): the daemon applies no until filter
    return sec + nsec / _NS


def passes_until(created: float, cutoff: float | None) -> bool:
    """Whether an image created at ``created`` (Unix time) survives the until filter as a prune candidate.

    The daemon skips images whose Created is after the cutoff, so equality prunes.
    The image list reports Created in whole seconds while the daemon compares
    the full timestamp: an image created within the cutoff's own second, after
    it, counts here but not for the daemon.
    """
    return cutoff is None or created <= cutoff


# --------------------------------------------------------------------------
# label / label!


def parse_label_values(values: Iterable[str], filter_name: str = "label") -> list[tuple[str, str | None]]:
    """``KEY`` or ``KEY=VALUE`` filter values as (key, value or None); an empty key is refused.

    The daemon would accept an empty key and simply match nothing; Dockhand
    refuses it as the mistake it almost certainly is.
    """
    parsed: list[tuple[str, str | None]] = []
    for raw in values:
        key, eq, val = raw.partition("=")
        if not key:
            raise UsageError(f"invalid filter '{filter_name}={raw[:40]}': the label key is empty", LABEL_HINT)
        parsed.append((key, val if eq else None))
    return parsed


def match_kv_list(values: Iterable[str], labels: Mapping[str, str] | None) -> bool:
    """``filters.Args.MatchKVList`` for one key's values against an image's labels.

    No values: True. No labels: False. Otherwise every value must match:
    ``KEY`` needs the label present, ``KEY=VALUE`` needs it equal (``KEY=``
    needs it present and empty). Only the first ``=`` splits.
    """
    wanted = set(values)
    if not wanted:
        return True
    if not labels:
        return False
    for value in wanted:
        key, eq, want = value.partition("=")
        if key not in labels:
            return False
        if eq and labels[key] != want:
            return False
    return True


def match_labels(filters: Mapping[str, Iterable[str]], labels: Mapping[str, str] | None) -> bool:
    """image_prune.go's ``matchLabels``: True when the image stays a prune candidate.

    Every ``label`` value must match; when the ``label!`` key is present and all
    its values match, the image is excluded. (As in Go, a ``label!`` key present
    with no values matches every image and so excludes all of them.)
    """
    if not match_kv_list(filters.get("label", ()), labels):
        return False
    if "label!" in filters and match_kv_list(filters["label!"], labels):
        return False
    return True
