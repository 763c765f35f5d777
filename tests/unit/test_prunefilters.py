"""``docker image prune --filter`` values as the daemon reads them (Go ParseDuration,
moby GetTimestamp/ParseTimestamps, MatchKVList, matchLabels)."""

import calendar

import pytest

from handlers.errors import UsageError
from handlers.prunefilters import (
    UNTIL_HINT,
    check_until,
    go_duration,
    go_duration_ns,
    match_kv_list,
    match_labels,
    parse_label_values,
    passes_until,
    until_cutoff,
    until_timestamp,
)

H = 3600 * 10**9
M = 60 * 10**9
S = 10**9
NOW = 1_700_000_000.25  # a fixed "now" with a fraction, to see the truncation to whole seconds


def utc(*fields):
    return calendar.timegm((*fields, 0, 0, 0))


# ---------------------------------------------------------------- Go durations

@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("+0", 0), ("-0", 0), ("0s", 0), ("0.0h", 0),
    ("1h30m", 90 * M), ("-1h", -H), ("+1h", H), ("1.5h", 90 * M), ("300ms", 300_000_000),
    ("2h45m30.5s", 2 * H + 45 * M + 30 * S + 500_000_000), ("1µs", 1_000), ("1μs", 1_000),
    ("1us", 1_000), ("1ns", 1), ("1.9ns", 1), (".5s", 500_000_000), ("5.s", 5 * S),
    ("1h1h", 2 * H), ("1m1h", H + M), ("-1.5h", -90 * M), ("0.000000001s", 1), ("1.0000000001s", S),
    ("1.h", H), ("00001s", S),
    ("2562047h47m16.854775807s", 2**63 - 1), ("-2562047h47m16.854775808s", -2**63),
    ("9223372036854775807ns", 2**63 - 1),
    # Go scales fractions through float64 and truncates: off by one nanosecond either way
    ("0.55655549660000m", 33_393_329_795), ("0.9624989284113887h", 3_464_996_142_281),
    # uint64 wrap-around in Go's accumulator: two halves of 1<<64 add up to zero
    ("9223372036854775808ns9223372036854775808ns", 0),
])
def test_go_duration_ns(text, ns):
    assert go_duration_ns(text) == ns


@pytest.mark.parametrize("text,seconds", [
    ("1h30m", 5400.0), ("-1h", -3600.0), ("1.5h", 5400.0), ("300ms", 0.3), ("2h45m30.5s", 9930.5),
    ("1µs", 1e-6), ("1μs", 1e-6), (".5s", 0.5), ("5.s", 5.0), ("24h", 86400.0), ("0", 0.0),
])
def test_go_duration_seconds(text, seconds):
    assert go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)
    assert isinstance(go_duration(text), float)


@pytest.mark.parametrize("text,message", [
    ("", 'time: invalid duration ""'),
    ("1", 'time: missing unit in duration "1"'),
    ("1h30", 'time: missing unit in duration "1h30"'),
    ("h", 'time: invalid duration "h"'),
    ("+", 'time: invalid duration "+"'),
    ("-", 'time: invalid duration "-"'),
    ("1x", 'time: unknown unit "x" in duration "1x"'),
    ("--1h", 'time: invalid duration "--1h"'),
    ("1e3h", 'time: unknown unit "e" in duration "1e3h"'),
    ("1H", 'time: unknown unit "H" in duration "1H"'),
    ("1h 30m", 'time: unknown unit "h " in duration "1h 30m"'),
    (" 1h", 'time: invalid duration " 1h"'),
    (".s", 'time: invalid duration ".s"'),
    ("-.s", 'time: invalid duration "-.s"'),
    ("1µx", 'time: unknown unit "\\xc2\\xb5x" in duration "1\\xc2\\xb5x"'),
    ("9999999999h", 'time: invalid duration "9999999999h"'),
    ("2562047h47m16.854775808s", 'time: invalid duration "2562047h47m16.854775808s"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("99999999999999999999ns", 'time: invalid duration "99999999999999999999ns"'),
    ("2562047h2562047h", 'time: invalid duration "2562047h2562047h"'),
])
def test_go_duration_errors_carry_go_message(text, message):
    with pytest.raises(ValueError) as info:
        go_duration(text)
    assert str(info.value) == message
    assert not isinstance(info.value, UsageError)


# ---------------------------------------------------------------- until

# (value, utc offset of the daemon's zone, exact (seconds, nanoseconds))
UNTIL_CASES = [
    # durations: now minus d, truncated to whole seconds (Time.Unix floors)
    ("1h", 0, (1_699_996_400, 0)),
    ("24h", 3600, (1_700_000_000 - 86400, 0)),
    ("-1h", 0, (1_700_003_600, 0)),  # an hour in the future
    ("1.5s", 0, (1_699_999_998, 0)),
    ("1h30m", 0, (1_700_000_000 - 5400, 0)),
    ("300ms", 0, (1_699_999_999, 0)),
    ("0s", 0, (1_700_000_000, 0)),   # a zero duration is now...
    ("-0", 0, (1_700_000_000, 0)),
    ("+0", 0, (1_700_000_000, 0)),
    ("0", 0, (0, 0)),                # ...but "0" alone is the Unix epoch
    ("0", 3600, (0, 0)),
    # the int64 minimum duration cannot be negated: it lands 292 years in the past
    ("-2562047h47m16.854775808s", 0, ((1_700_000_000_250_000_000 - 2**63) // 10**9, 0)),
    # dates and times without a zone: in the daemon's zone
    ("2024-01-01", 0, (utc(2024, 1, 1, 0, 0, 0), 0)),
    ("2024-01-01", 3600, (utc(2024, 1, 1, 0, 0, 0) - 3600, 0)),
    ("2024-01-01", -5 * 3600, (utc(2024, 1, 1, 0, 0, 0) + 5 * 3600, 0)),
    ("2024-01-01T15", 0, (utc(2024, 1, 1, 15, 0, 0), 0)),
    ("2024-01-01T15", 3600, (utc(2024, 1, 1, 14, 0, 0), 0)),
    ("2024-01-01T15:04", 0, (utc(2024, 1, 1, 15, 4, 0), 0)),
    ("2024-01-01T15:04:05", 0, (utc(2024, 1, 1, 15, 4, 5), 0)),
    ("2024-01-01T15:04:05", 3600, (utc(2024, 1, 1, 14, 4, 5), 0)),
    ("2024-01-01T15:04:05.5", 0, (utc(2024, 1, 1, 15, 4, 5), 500_000_000)),
    ("2024-01-01T15:04:05.5", 3600, (utc(2024, 1, 1, 14, 4, 5), 500_000_000)),
    ("2024-01-01T15:04:05,5", 0, (utc(2024, 1, 1, 15, 4, 5), 500_000_000)),  # Go takes a comma too
    ("2024-01-01T5", 0, (utc(2024, 1, 1, 5, 0, 0), 0)),  # layout "15" accepts one digit
    ("2024-02-29", 0, (utc(2024, 2, 29, 0, 0, 0), 0)),
    # with a zone: the daemon's zone is irrelevant
    ("2024-01-01T15:04:05Z", 0, (utc(2024, 1, 1, 15, 4, 5), 0)),
    ("2024-01-01T15:04:05Z", 3600, (utc(2024, 1, 1, 15, 4, 5), 0)),
    ("2024-01-01T15:04:05+02:00", 0, (utc(2024, 1, 1, 13, 4, 5), 0)),
    ("2024-01-01T15:04:05+02:00", -7200, (utc(2024, 1, 1, 13, 4, 5), 0)),
    ("2024-01-01T15:04:05.123456789-07:00", 3600, (utc(2024, 1, 1, 22, 4, 5), 123_456_789)),
    ("2024-01-01T15:04:05.1234567891Z", 0, (utc(2024, 1, 1, 15, 4, 5), 123_456_789)),  # truncated
    ("2024-01-01T15Z", 3600, (utc(2024, 1, 1, 15, 0, 0), 0)),
    ("2024-01-01T15+01:00", 0, (utc(2024, 1, 1, 14, 0, 0), 0)),
    ("2024-01-01T15:04-01:00", 0, (utc(2024, 1, 1, 16, 4, 0), 0)),
    ("2024-01-01Z", 3600, (utc(2024, 1, 1, 0, 0, 0), 0)),
    ("2024-01-01+01:00", 0, (utc(2023, 12, 31, 23, 0, 0), 0)),
    ("2024-01-01-01:00", 0, (utc(2024, 1, 1, 1, 0, 0), 0)),  # three dashes: a zone
    ("2024-01-01T15:04:05+24:00", 0, (utc(2023, 12, 31, 15, 4, 5), 0)),  # Go allows hour 24 in offsets
    ("1969-12-31T23:59:59.5Z", 0, (-1, 500_000_000)),
    ("0000-01-01T00:00:00Z", 0, (-62_167_219_200, 0)),  # year 0 exists for Go
    # Unix timestamps
    ("1700000000", 3600, (1_700_000_000, 0)),
    ("1700000000.5", 0, (1_700_000_000, 500_000_000)),
    ("1700000000.000000001", 0, (1_700_000_000, 1)),
    ("1700000000.1234567891", 0, (1_700_000_000, 123_456_789)),
    ("+1700000000", 0, (1_700_000_000, 0)),
    ("2024", 3600, (2024, 0)),  # not a year: 2024 seconds after the epoch
    ("1.+5", 0, (1, 50_000_000)),  # ParseInt takes the sign; the length counts it
    ("1.8999999999999999999", 0, (1, 900_000_000)),  # float64(8999999999999999999) rounds to 9e18
    ("1.00000000005", 0, (1, 0)),
    ("9223371974719179007", 0, (2**63 - 1 - 62_135_596_800, 0)),  # the largest time.Time holds
    ("9223371974719179008", 0, (-2**63 - 62_135_596_800, 0)),  # wraps to the far past in time.Unix
    ("9223372036854775807", 0, (-2**63 - 1, 0)),
]


@pytest.mark.parametrize("value,offset,expected", UNTIL_CASES)
def test_until_timestamp_is_exact(value, offset, expected):
    assert until_timestamp(value, NOW, offset) == expected


@pytest.mark.parametrize("value,offset,expected", UNTIL_CASES)
def test_until_cutoff_is_the_same_instant_as_a_float(value, offset, expected):
    sec, nsec = expected
    got = until_cutoff(value, NOW, offset)
    assert isinstance(got, float)
    assert got == pytest.approx(sec + nsec / 1e9, rel=0, abs=1e-6)


def test_until_cutoff_keeps_sub_second_precision():
    assert until_cutoff("1700000000.5", NOW) == 1_700_000_000.5
    assert until_cutoff("2024-01-01T15:04:05.25Z", NOW) == utc(2024, 1, 1, 15, 4, 5) + 0.25
    assert until_cutoff("1969-12-31T23:59:59.5Z", NOW) == -0.5


def test_until_duration_follows_now():
    assert until_cutoff("10m", 1_000_000.0) == 1_000_000 - 600
    assert until_cutoff("10m", 2_000_000.9) == 2_000_000 - 600
    assert until_cutoff("10m", 2_000_000) == 2_000_000 - 600


@pytest.mark.parametrize("value,go_error", [
    ("12345678901234567890123", 'failed to parse value as time or duration: "12345678901234567890123"'),
    ("9223372036854775808", 'failed to parse value as time or duration: "9223372036854775808"'),
    ("2024-13-01", 'parsing time "2024-13-01": month out of range'),
    ("2024-00-10", 'parsing time "2024-00-10": month out of range'),
    ("yesterday", 'failed to parse value as time or duration: "yesterday"'),
    ("1h30", 'failed to parse value as time or duration: "1h30"'),
    ("2024-01-01T25:00", 'parsing time "2024-01-01T25:00": hour out of range'),
    ("2024-01-01T15:60", 'parsing time "2024-01-01T15:60": minute out of range'),
    ("2024-01-01T15:04:60", 'parsing time "2024-01-01T15:04:60": second out of range'),
    ("2023-02-29", 'parsing time "2023-02-29": day out of range'),
    ("2024-04-31", 'parsing time "2024-04-31": day out of range'),
    ("2024-1-01", 'parsing time "2024-1-01" as "2006-01-02": cannot parse "1-01" as "01"'),
    ("2024-01-01t15:04:05", 'parsing time "2024-01-01t15:04:05": extra text: "t15:04:05"'),
    ("2024-01-01T15:04:05z",
     'parsing time "2024-01-01T15:04:05z" as "2006-01-02T15:04:05Z07:00": cannot parse "z" as "Z07:00"'),
    ("2024-01-01T15:04:05-0700",
     'parsing time "2024-01-01T15:04:05-0700" as "2006-01-02T15:04Z07:00": cannot parse ":05-0700" as "Z07:00"'),
    ("2024-01-01T15:04:05+25:00", 'parsing time "2024-01-01T15:04:05+25:00": time zone offset hour out of range'),
    ("-1700000000",
     'parsing time "-1700000000" as "2006-01-02": cannot parse "-1700000000" as "2006"'),
    ("1700000000.", 'failed to parse value as time or duration: "1700000000."'),
    (".5", 'failed to parse value as time or duration: ".5"'),
    ("1.-5", 'parsing time "1.-5" as "2006-01-02T15:04:05.999999999": cannot parse "1.-5" as "2006"'),
    ("", 'failed to parse value as time or duration: ""'),
    (" 24h", 'failed to parse value as time or duration: " 24h"'),
])
def test_until_errors(value, go_error):
    with pytest.raises(UsageError) as info:
        until_cutoff(value, NOW, 0)
    assert info.value.message == "invalid value for 'until' filter: " + go_error
    assert info.value.hint == UNTIL_HINT


def test_until_error_names_value_and_hints_every_form():
    with pytest.raises(UsageError) as info:
        until_cutoff("12345678901234567890123", NOW)
    assert "12345678901234567890123" in info.value.message
    for form in ("24h", "1h30m", "-1h", "2024-01-01", "2024-01-01T15:04:05Z", "RFC 3339", "1700000000"):
        assert form in info.value.hint


# ---------------------------------------------------------------- check_until

def test_check_until_without_values_is_none():
    assert check_until([], NOW) is None


def test_check_until_one_value():
    assert check_until(["1h"], NOW) == 1_699_996_400
    assert check_until(["2024-01-01"], NOW, 3600) == utc(2024, 1, 1, 0, 0, 0) - 3600


def test_check_until_repeated_value_is_one_value():
    assert check_until(["24h", "24h"], NOW) == 1_700_000_000 - 86400


def test_check_until_refuses_two_values():
    with pytest.raises(UsageError) as info:
        check_until(["24h", "48h"], NOW)
    assert info.value.message == "more than one until filter specified"


def test_check_until_bad_value():
    with pytest.raises(UsageError, match="until"):
        check_until(["yesterday"], NOW)


def test_check_until_go_zero_time_disables_the_filter():
    assert until_cutoff("0001-01-01T00:00:00Z", NOW) == -62_135_596_800
    assert check_until(["0001-01-01T00:00:00Z"], NOW) is None
    assert check_until(["0001-01-01"], NOW, 0) is None
    assert check_until(["0001-01-01"], NOW, 3600) == -62_135_596_800 - 3600


@pytest.mark.parametrize("created,cutoff,kept", [
    (100, None, True), (99, 100.0, True), (100, 100.0, True), (100.5, 100.0, False), (101, 100.0, False),
])
def test_passes_until_prunes_at_or_before_cutoff(created, cutoff, kept):
    assert passes_until(created, cutoff) is kept


# ---------------------------------------------------------------- labels

@pytest.mark.parametrize("values,labels,matches", [
    ([], {}, True),
    ([], {"a": "1"}, True),
    ([], None, True),
    (["a"], {}, False),
    (["a"], None, False),
    (["a"], {"a": "1"}, True),
    (["a"], {"a": ""}, True),
    (["b"], {"a": "1"}, False),
    (["a=1"], {"a": "1"}, True),
    (["a=2"], {"a": "1"}, False),
    (["a="], {"a": ""}, True),
    (["a="], {"a": "1"}, False),
    (["a=1=2"], {"a": "1=2"}, True),
    (["a=1=2"], {"a": "1"}, False),
    (["a", "b=2"], {"a": "1", "b": "2"}, True),
    (["a", "b=2"], {"a": "1", "b": "3"}, False),
    (["a", "c"], {"a": "1", "b": "2"}, False),
    (["A"], {"a": "1"}, False),
    (["a=1", "a=2"], {"a": "1"}, False),
])
def test_match_kv_list(values, labels, matches):
    assert match_kv_list(values, labels) is matches


@pytest.mark.parametrize("filters,labels,candidate", [
    ({}, {"a": "1"}, True),
    ({}, {}, True),
    ({"label": ["a"]}, {"a": "1"}, True),
    ({"label": ["a"]}, {}, False),
    ({"label": ["a=1"]}, {"a": "2"}, False),
    ({"label!": ["a"]}, {"a": "1"}, False),
    ({"label!": ["a"]}, {"b": "1"}, True),
    ({"label!": ["a"]}, {}, True),
    ({"label!": ["a=1"]}, {"a": "1"}, False),
    ({"label!": ["a=1"]}, {"a": "2"}, True),
    # label! excludes only when ALL its values match
    ({"label!": ["a", "b"]}, {"a": "1"}, True),
    ({"label!": ["a", "b"]}, {"a": "1", "b": "2"}, False),
    ({"label": ["a"], "label!": ["b"]}, {"a": "1"}, True),
    ({"label": ["a"], "label!": ["b"]}, {"a": "1", "b": "2"}, False),
    ({"label": ["a"], "label!": ["b"]}, {"b": "2"}, False),
    # a label! key with no values matches everything, so excludes everything
    ({"label!": []}, {"a": "1"}, False),
    ({"until": ["24h"], "dangling": ["true"]}, {}, True),
])
def test_match_labels(filters, labels, candidate):
    assert match_labels(filters, labels) is candidate


def test_parse_label_values():
    assert parse_label_values(["a", "a=1", "a=", "a=b=c"]) == [("a", None), ("a", "1"), ("a", ""), ("a", "b=c")]
    assert parse_label_values([]) == []


@pytest.mark.parametrize("value", ["", "=", "=v"])
def test_parse_label_values_refuses_empty_key(value):
    with pytest.raises(UsageError) as info:
        parse_label_values(["ok", value], "label!")
    assert "label!=" in info.value.message
    assert "key" in info.value.message
    assert info.value.hint
