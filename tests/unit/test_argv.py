"""The CLI grammar: pflag-style flags and cobra-style argument errors."""

import pytest

from handlers.argv import CommandSpec, Flag, command_help, parse_flags, tokenize
from handlers.errors import UsageError

SPEC = CommandSpec(("images",), "images [OPTIONS] [REPOSITORY[:TAG]]", "List images", None,
                   (Flag("all", "a"), Flag("quiet", "q"), Flag("filter", "f", "list"), Flag("limit", kind="int", default=25),
                    Flag("format", kind="str", unsupported="no templates")), max_args=1)


def parse(*words):
    return parse_flags(SPEC, list(words), "docker images")


def test_long_short_combined_and_values():
    p = parse("-aq", "--filter", "dangling=true", "-fLabel=x", "--limit=5", "ubuntu")
    assert p.opts == {"all": True, "quiet": True, "filter": ["dangling=true", "Label=x"], "limit": 5, "format": None}
    assert p.args == ["ubuntu"]
    assert parse("-f=a=b").opts["filter"] == ["a=b"]
    assert parse("--all=false").opts["all"] is False


def test_double_dash_ends_flags():
    assert parse("--", "-a").args == ["-a"]


@pytest.mark.parametrize("words,message", [
    (["--bogus"], "unknown flag: --bogus"),
    (["-z"], "unknown shorthand flag: 'z' in -z"),
    (["--limit"], "flag needs an argument: --limit"),
    (["-f"], "flag needs an argument: 'f' in -f"),
    (["--limit", "ten"], 'invalid argument "ten" for "--limit" flag'),
    (["a", "b"], '"docker images" accepts at most 1 argument.'),
    (["---x"], "bad flag syntax: ---x"),
    (["--format", "{{.ID}}"], "flag --format is not supported by Dockhand"),
])
def test_errors_use_cli_words(words, message):
    with pytest.raises(UsageError) as exc:
        parse(*words)
    assert exc.value.message.startswith(message)
    assert exc.value.hint


def test_typo_gets_a_suggestion():
    with pytest.raises(UsageError) as exc:
        parse("--quite")
    assert "Did you mean --quiet?" in exc.value.hint


def test_help_flag_short_circuits_argument_checks():
    assert parse("a", "b", "--help").help


def test_tokenize_quotes_and_slack_curly_quotes():
    assert tokenize('search --filter "is-official=true" ubuntu') == ["search", "--filter", "is-official=true", "ubuntu"]
    assert tokenize("search --filter \u201cis-official=true\u201d ubuntu")[2] == "is-official=true"


@pytest.mark.parametrize("line", ["rmi $(docker images -q)", "images | grep x", "images; rm -rf /", "images `id`",
                                  'search "unterminated', "images \x00", "x" * 5000])
def test_tokenize_refuses_shell_and_junk(line):
    with pytest.raises(UsageError):
        tokenize(line)


def test_command_help_lists_flags_like_pflag():
    text = command_help(SPEC)
    assert "Usage:  docker images [OPTIONS] [REPOSITORY[:TAG]]" in text
    assert "  -a, --all" in text and "      --limit int" in text and "(default 25)" in text
