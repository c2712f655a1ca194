import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from api import create_app
from config import SETTINGS, ConfigError, Settings, read_environment
from config.values import database_url, split_secrets

ROOT = Path(__file__).resolve().parents[1]
KEY_OF_32_BYTES = "production-key-0123456789abcdefg"


def env_app(monkeypatch, tmp_path, **env):
    for name in ("SECRET_KEY", "DATABASE_URL", "FLASK_DEBUG", "SYNC_MODE", "PLUGGY_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    return create_app


def test_missing_secret_key_outside_debug_stops_start_up(monkeypatch, tmp_path):
    factory = env_app(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        factory()


def test_secret_key_from_environment(monkeypatch, tmp_path):
    app = env_app(monkeypatch, tmp_path, SECRET_KEY=KEY_OF_32_BYTES)()
    assert app.config["SECRET_KEY"] == KEY_OF_32_BYTES


def test_a_secret_key_shorter_than_32_bytes_stops_start_up_without_showing_it(monkeypatch, tmp_path):
    short = KEY_OF_32_BYTES[:-1]
    factory = env_app(monkeypatch, tmp_path, SECRET_KEY=short)

    with pytest.raises(ConfigError, match="SECRET_KEY is 31 bytes long") as refused:
        factory()

    assert short not in str(refused.value) and short[:8] not in str(refused.value)


def test_a_short_secret_key_is_refused_in_tests_too_but_not_in_debug(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        env_app(monkeypatch, tmp_path, SECRET_KEY="short")({"TESTING": True})
    assert env_app(monkeypatch, tmp_path, SECRET_KEY="short", FLASK_DEBUG="1")().config["SECRET_KEY"] == "short"


def flask_command(tmp_path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "FLASK_DEBUG", "FLASK_APP")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", **settings)
    return subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({}, "Error: SECRET_KEY is not set."),
        ({"SECRET_KEY": "too-short"}, "Error: SECRET_KEY is 9 bytes long"),
        ({"SECRET_KEY": KEY_OF_32_BYTES, "SYNC_MODE": "push"}, "Error: SYNC_MODE must be one of webhook, poll"),
        ({"SECRET_KEY": KEY_OF_32_BYTES, "LOG_LEVEL": "verbose"}, "Error: LOG_LEVEL must be one of DEBUG"),
        ({"SECRET_KEY": KEY_OF_32_BYTES, "JOB_MAX_ATTEMPTS": "0"}, "Error: JOB_MAX_ATTEMPTS must be a whole number"),
    ],
)
def test_a_configuration_error_stops_a_command_with_its_message_alone(tmp_path, settings, message):
    done = flask_command(tmp_path, "jobs", "list", **settings)

    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(message)
    assert done.stdout == ""
    assert "too-short" not in done.stderr


def test_debug_generates_a_secret_key_once_and_keeps_it_private(monkeypatch, tmp_path):
    factory = env_app(monkeypatch, tmp_path, FLASK_DEBUG="1")
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path / "instance"))
    first = factory().config["SECRET_KEY"]
    second = factory().config["SECRET_KEY"]
    key_file = tmp_path / "instance" / "secret_key"
    assert first == second and len(first) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_testing_gets_an_ephemeral_key_without_touching_disk(monkeypatch, tmp_path):
    factory = env_app(monkeypatch, tmp_path)
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path / "instance"))
    app = factory({"TESTING": True})
    assert len(app.config["SECRET_KEY"]) == 64
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_defaults(tmp_path):
    config = read_environment({}, str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'pluggy_sync.db'}"
    assert config["PLUGGY_BASE_URL"] == "https://api.pluggy.ai"
    assert config["SYNC_MODE"] == "webhook"
    assert config["SYNC_BACKFILL_DAYS"] == 365
    assert config["SYNC_LOOKBACK_DAYS"] == 7
    assert config["PLUGGY_WEBHOOK_SECRETS"] == ()
    assert config["PUBLIC_BASE_URL"] is None


def test_values_from_the_environment(tmp_path):
    config = read_environment(
        {
            "PLUGGY_BASE_URL": "http://127.0.0.1:9000",
            "PLUGGY_CLIENT_ID": "id",
            "PLUGGY_CLIENT_SECRET": "secret",
            "PLUGGY_WEBHOOK_SECRET": "old, new",
            "PUBLIC_BASE_URL": "https://sync.example.com/",
            "SYNC_MODE": "poll",
            "SYNC_BACKFILL_DAYS": "90",
            "SYNC_LOOKBACK_DAYS": "5",
        },
        str(tmp_path),
    )
    assert config["PLUGGY_BASE_URL"] == "http://127.0.0.1:9000"
    assert (config["PLUGGY_CLIENT_ID"], config["PLUGGY_CLIENT_SECRET"]) == ("id", "secret")
    assert config["PLUGGY_WEBHOOK_SECRETS"] == ("old", "new")
    assert config["PUBLIC_BASE_URL"] == "https://sync.example.com"
    assert config["SYNC_MODE"] == "poll"
    assert (config["SYNC_BACKFILL_DAYS"], config["SYNC_LOOKBACK_DAYS"]) == (90, 5)


@pytest.mark.parametrize(
    "name, value",
    [
        ("SYNC_MODE", "push"),
        ("SYNC_BACKFILL_DAYS", "a year"),
        ("SYNC_LOOKBACK_DAYS", "0"),
        ("SYNC_LOOKBACK_DAYS", "\u00b2"),
    ],
)
def test_bad_values_are_refused_by_name(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        read_environment({name: value}, str(tmp_path))


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_uses_psycopg_3(given, expected):
    assert database_url("DATABASE_URL", given) == expected


def test_webhook_secrets_ignore_blanks():
    assert split_secrets("X", " a ,, b ,") == ("a", "b")
    assert split_secrets("X", "") == ()


def test_sweep_timing_takes_fractions_for_short_test_runs(tmp_path):
    config = read_environment({"SYNC_SWEEP_INTERVAL_MINUTES": "0.5", "SYNC_SWEEP_STALE_HOURS": "0.01"}, str(tmp_path))
    assert (config["SYNC_SWEEP_INTERVAL_MINUTES"], config["SYNC_SWEEP_STALE_HOURS"]) == (0.5, 0.01)
    with pytest.raises(ConfigError, match="SYNC_SWEEP_STALE_HOURS"):
        read_environment({"SYNC_SWEEP_STALE_HOURS": "-1"}, str(tmp_path))


def test_every_setting_is_read_from_the_environment_with_its_name_in_any_refusal(tmp_path):
    config = read_environment(
        {
            "SYNC_WATCH_INTERVAL_S": "0.5",
            "SYNC_WATCH_TIMEOUT_S": "60",
            "SYNC_ITEM_UPDATES_PER_MINUTE": "10",
            "SYNC_SWEEP_BATCH": "25",
            "JOB_MAX_ATTEMPTS": "3",
        },
        str(tmp_path),
    )
    settings = Settings.from_config({**config, "SECRET_KEY": KEY_OF_32_BYTES})
    assert (settings.watch_interval_s, settings.watch_timeout_s) == (0.5, 60)
    assert (settings.item_updates_per_minute, settings.sweep_batch, config["JOB_MAX_ATTEMPTS"]) == (10, 25, 3)
    refused = []
    for setting in SETTINGS:
        with contextlib.suppress(ConfigError):
            setting.read(setting.env, "not a number nor a choice")
            continue  # free text: taken as it is
        with pytest.raises(ConfigError, match=f"^{setting.env} must be"):
            read_environment({setting.env: "not a number nor a choice"}, str(tmp_path))
        refused.append(setting.env)
    assert {"SYNC_MODE", "PLUGGY_BASE_URL", "PUBLIC_BASE_URL", "JOB_MAX_ATTEMPTS", "LOG_LEVEL"} <= set(refused)


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :].split("\n## ")[0]
    missing = [setting.env for setting in SETTINGS if f"`{setting.env}`" not in table]
    assert not missing, f"not in the README's configuration table: {missing}"
