import pytest

from bot.config import DEFAULT_DOCKER_HOST, ConfigError, load_settings


def test_defaults():
    s = load_settings({})
    assert s.docker_host == DEFAULT_DOCKER_HOST  # the docker CLI's own default
    assert (s.http_host, s.http_port, s.reply_visibility) == ("0.0.0.0", 3000, "ephemeral")
    assert not s.slack_enabled


def test_values_are_read():
    s = load_settings({"DOCKER_HOST": "tcp://h:2375", "PORT": "8080", "DOCKHAND_ADMINS": "U1, U2,",
                       "DOCKHAND_ENGINE_TIMEOUT": "5", "DOCKHAND_SEARCH_INDEX": "127.0.0.1:5001/"})
    assert s.http_port == 8080 and s.admins == {"U1", "U2"} and s.engine_timeout == 5
    assert s.search_index == "127.0.0.1:5001"


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        load_settings({"DOCKER_HOST": "/run/engine.sock", "PORT": "70000", "DOCKHAND_ENGINE_TIMEOUT": "soon",
                       "SLACK_BOT_TOKEN": "xoxp-user", "SLACK_APP_TOKEN": "xoxb-wrong"})
    text = "\n".join(exc.value.problems)
    for needle in ("DOCKER_HOST", "PORT='70000'", "DOCKHAND_ENGINE_TIMEOUT", "xoxb-", "xapp-"):
        assert needle in text
    assert len(exc.value.problems) == 5


def test_http_mode_needs_signing_secret_socket_mode_does_not():
    with pytest.raises(ConfigError) as exc:
        load_settings({"SLACK_BOT_TOKEN": "xoxb-1"})
    assert "SLACK_SIGNING_SECRET" in exc.value.problems[0]
    assert load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}).socket_mode
    assert load_settings({"SLACK_BOT_TOKEN": "xoxb-1"}, slack=False).slack_enabled


def test_native_tables_are_on_unless_turned_off():
    assert load_settings({}).native_tables
    for off in ("0", "false", "OFF", " no "):
        assert not load_settings({"DOCKHAND_NATIVE_TABLES": off}).native_tables
    assert load_settings({"DOCKHAND_NATIVE_TABLES": "1"}).native_tables
    with pytest.raises(ConfigError) as exc:
        load_settings({"DOCKHAND_NATIVE_TABLES": "sometimes"})
    assert exc.value.problems == ["DOCKHAND_NATIVE_TABLES='sometimes' must be 1 (lists as Slack tables) "
                                  "or 0 (code blocks, as the CLI prints them)"]


def test_loading_with_the_collector_off_turns_it_back_on_before_a_command_runs():
    """bot.cli.entry turns the cyclic collector off while Dockhand loads;
    _loaded freezes what loading made and turns it on again. Called with the
    collector on (tests, an embedding program), it changes nothing."""
    import gc

    from bot.cli import _loaded

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    _loaded()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        _loaded()
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.enable()
        gc.unfreeze()


def test_env_file_named_on_purpose_must_exist_and_dot_env_is_read_when_present(tmp_path, monkeypatch):
    import os

    from bot.config import ConfigError, load_dotenv_file

    with pytest.raises(ConfigError) as exc:
        load_dotenv_file(tmp_path / "missing.env")
    assert exc.value.problems == [f"--env-file {str(tmp_path / 'missing.env')!r}: no such file"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCKHAND_TEST_FROM_DOTENV", raising=False)
    load_dotenv_file()  # no ./.env: nothing happens
    assert "DOCKHAND_TEST_FROM_DOTENV" not in os.environ
    (tmp_path / ".env").write_text("DOCKHAND_TEST_FROM_DOTENV=yes\n", encoding="utf-8")
    load_dotenv_file()
    assert os.environ.pop("DOCKHAND_TEST_FROM_DOTENV") == "yes"
    monkeypatch.setenv("DOCKHAND_TEST_FROM_DOTENV", "real")  # the real environment wins
    load_dotenv_file()
    assert os.environ["DOCKHAND_TEST_FROM_DOTENV"] == "real"
