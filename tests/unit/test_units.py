"""go-units formatting, checked against values the Docker CLI prints."""

import pytest

from handlers.units import bytes_size, created_since, ellipsis, human_duration, human_size, truncate_id


@pytest.mark.parametrize("size,shown", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1840, "1.84kB"), (69_900_000, "69.9MB"),
    (119_000_000, "119MB"), (4_190_000, "4.19MB"), (1_234_567_890, "1.23GB"), (999_500, "1e+03kB"),
])
def test_human_size_is_cli_precision_3(size, shown):
    assert human_size(size) == shown


def test_bytes_size_binary_four_digits():
    assert bytes_size(25_199_570_944) == "23.47GiB"
    assert bytes_size(0) == "0B"


@pytest.mark.parametrize("secs,shown", [
    (0.2, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
    (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"), (48 * 3600, "2 days"),
    (13 * 86400, "13 days"), (14 * 86400, "2 weeks"), (59 * 86400, "8 weeks"), (60 * 86400, "2 months"),
    (150 * 86400, "5 months"), (729 * 86400, "24 months"), (730 * 86400, "2 years"),
])
def test_human_duration(secs, shown):
    assert human_duration(secs) == shown


def test_created_since():
    assert created_since(1000, now=1000 + 150 * 86400) == "5 months ago"
    assert created_since(0) == "N/A"


def test_truncate_id_and_ellipsis():
    assert truncate_id("sha256:" + "ab" * 32) == "abababababab"
    assert truncate_id("fce289e99eb9bca977dae136fbe2a82b6b7d4c372474c9235adc1741675f587e") == "fce289e99eb9"
    desc = "Ubuntu is a Debian-based Linux operating system based on free software."
    assert ellipsis(desc, 45) == "Ubuntu is a Debian-based Linux operating sys…"
    assert len(ellipsis(desc, 45)) == 45
    assert ellipsis("short", 45) == "short"
    assert ellipsis("日本語日本語", 5) == "日本…"  # wide characters count two columns
