"""Typed settings from the environment, and the settings module failing fast on bad ones."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from trading_site.env import (
    database_from_url,
    development_secrets,
    env_bool,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_url,
    fernet_keys,
)

PROJECT = Path(__file__).resolve().parent.parent
VAR = "DESK_TEST_SETTING"


def new_key():
    return Fernet.generate_key().decode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("no", False),
        ("ON", True),
        ("oFf", False),
        (" true ", True),
    ],
)
def test_env_bool_reads_the_usual_words_in_any_case(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, default=not expected) is expected


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_falls_back_to_the_default_when_unset(monkeypatch, default):
    monkeypatch.delenv(VAR, raising=False)

    assert env_bool(VAR, default=default) is default


def test_env_bool_rejects_maybe_naming_the_variable(monkeypatch):
    monkeypatch.setenv(VAR, "maybe")

    with pytest.raises(ImproperlyConfigured) as raised:
        env_bool(VAR, default=False)

    assert f"{VAR}='maybe'" in str(raised.value)
    assert "not a boolean" in str(raised.value)


def test_env_int_reads_a_number_and_falls_back_when_unset(monkeypatch):
    monkeypatch.setenv(VAR, " 42 ")
    assert env_int(VAR, default=7) == 42

    monkeypatch.delenv(VAR)
    assert env_int(VAR, default=7) == 7


@pytest.mark.parametrize("raw", ["1", "120"])
def test_env_int_accepts_its_bounds(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_int(VAR, default=7, minimum=1, maximum=120) == int(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", f"{VAR}=0 is below its minimum of 1."),
        ("121", f"{VAR}=121 is above its maximum of 120."),
        ("4.5", f"{VAR}='4.5' is not a whole number."),
        ("seven", f"{VAR}='seven' is not a whole number."),
    ],
)
def test_env_int_rejects_out_of_range_and_non_numbers_naming_the_variable(monkeypatch, raw, message):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured) as raised:
        env_int(VAR, default=7, minimum=1, maximum=120)

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.example.com, b.example.com,,c ,", ["a.example.com", "b.example.com", "c"]),
        ("single", ["single"]),
        ("", []),
        (" , ,", []),
    ],
)
def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_list(VAR, default=["fallback"]) == expected


def test_env_list_returns_a_copy_of_the_default_when_unset(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    default = ["localhost"]

    result = env_list(VAR, default=default)
    result.append("changed")

    assert default == ["localhost"]
    assert result == ["localhost", "changed"]


def test_env_str_strips_and_falls_back(monkeypatch):
    monkeypatch.setenv(VAR, "  INFO \n")
    assert env_str(VAR, "WARNING") == "INFO"

    monkeypatch.delenv(VAR)
    assert env_str(VAR, "WARNING") == "WARNING"
    assert env_str(VAR) is None


def test_env_url_returns_a_url_with_an_allowed_scheme(monkeypatch):
    monkeypatch.setenv(VAR, " redis://:pw@cache:6379/2 ")

    assert env_url(VAR, "redis://127.0.0.1:6379/0", schemes=("redis", "rediss")) == "redis://:pw@cache:6379/2"


def test_env_url_checks_the_default_too(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)

    assert env_url(VAR, "https://api.kite.trade", schemes=("https",)) == "https://api.kite.trade"
    with pytest.raises(ImproperlyConfigured, match="must start with one of https://"):
        env_url(VAR, "ftp://api.kite.trade", schemes=("https",))


def test_env_url_rejects_a_wrong_scheme_and_redacts_the_password(monkeypatch):
    monkeypatch.setenv(VAR, "mysql://admin:hunter2@db.example.com/app")

    with pytest.raises(ImproperlyConfigured) as raised:
        env_url(VAR, "", schemes=("postgres", "sqlite"))

    message = str(raised.value)
    assert "hunter2" not in message
    assert f"{VAR}='mysql://admin:***@db.example.com/app'" in message
    assert "postgres://, sqlite://" in message


def test_env_url_does_not_leak_the_password_of_a_url_missing_its_scheme(monkeypatch):
    monkeypatch.setenv(VAR, "admin:hunter2@db.example.com:5432/app")

    with pytest.raises(ImproperlyConfigured) as raised:
        env_url(VAR, "", schemes=("postgres",))

    assert VAR in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_database_from_url_reads_every_part_of_a_postgres_url(tmp_path):
    url = "postgres://desk%40ops:p%40ss%3Aword@db.example.com:6543/trading?sslmode=require&connect_timeout=5"

    config = database_from_url(url, base_dir=tmp_path)

    assert config == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "trading",
        "USER": "desk@ops",
        "PASSWORD": "p@ss:word",
        "HOST": "db.example.com",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require", "connect_timeout": "5"},
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


@pytest.mark.parametrize("scheme", ["postgresql", "pgsql"])
def test_database_from_url_accepts_postgres_aliases_without_port_or_password(tmp_path, scheme):
    config = database_from_url(f"{scheme}://desk@localhost/trading", base_dir=tmp_path)

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["USER"], config["PASSWORD"], config["HOST"], config["PORT"]) == ("desk", "", "localhost", "")
    assert (config["NAME"], config["OPTIONS"]) == ("trading", {})


@pytest.mark.parametrize("url", ["postgres://desk@localhost:5432", "postgres://desk@localhost:5432/"])
def test_database_from_url_rejects_a_postgres_url_without_a_database_name(tmp_path, url):
    with pytest.raises(ImproperlyConfigured, match=r"^TEST_DB names no database"):
        database_from_url(url, base_dir=tmp_path, variable="TEST_DB")


def test_database_from_url_rejects_a_port_that_is_not_a_number(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL has a port that is not a number"):
        database_from_url("postgres://desk@localhost:five/trading", base_dir=tmp_path)


def test_database_from_url_resolves_a_relative_sqlite_path_against_base_dir(tmp_path):
    config = database_from_url("sqlite:///var/db.sqlite3", base_dir=tmp_path)

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "var" / "db.sqlite3")
    assert config["OPTIONS"]["timeout"] == 20
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]


def test_database_from_url_keeps_an_absolute_sqlite_path(tmp_path):
    config = database_from_url("sqlite:////srv/desk/db%20main.sqlite3", base_dir=tmp_path)

    assert config["NAME"] == "/srv/desk/db main.sqlite3"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_database_from_url_rejects_a_sqlite_url_without_a_file(tmp_path, url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL names no SQLite file"):
        database_from_url(url, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("url", "named"),
    [("mysql://desk@localhost/trading", "not mysql://"), ("trading.sqlite3", "not nothing://")],
)
def test_database_from_url_rejects_other_schemes(tmp_path, url, named):
    with pytest.raises(ImproperlyConfigured) as raised:
        database_from_url(url, base_dir=tmp_path)

    assert "DATABASE_URL must start with postgres:// or sqlite:///" in str(raised.value)
    assert named in str(raised.value)


def test_fernet_keys_accepts_one_key():
    key = new_key()

    assert fernet_keys(key) == [key]


def test_fernet_keys_accepts_several_keys_in_order_for_rotation():
    first, second, third = new_key(), new_key(), new_key()

    assert fernet_keys(f" {first}, {second},,{third} ") == [first, second, third]


def test_fernet_keys_rejects_a_bad_key_naming_its_position_but_not_its_text():
    with pytest.raises(ImproperlyConfigured) as raised:
        fernet_keys(f"{new_key()},not-a-real-fernet-key,{new_key()}", variable="MY_KEYS")

    message = str(raised.value)
    assert message.startswith("MY_KEYS: key 2 is not a Fernet key")
    assert "not-a-real-fernet-key" not in message


@pytest.mark.parametrize("raw", ["", " , "])
def test_fernet_keys_rejects_an_empty_value(raw):
    with pytest.raises(ImproperlyConfigured, match=r"^FIELD_ENCRYPTION_KEY is empty\.$"):
        fernet_keys(raw)


def test_development_secrets_creates_a_private_file_with_usable_secrets(tmp_path):
    path = tmp_path / "var" / "dev-secrets.json"

    secrets = development_secrets(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == secrets
    assert sorted(secrets) == ["FIELD_ENCRYPTION_KEY", "SECRET_KEY"]
    assert len(secrets["SECRET_KEY"]) >= 50
    assert fernet_keys(secrets["FIELD_ENCRYPTION_KEY"]) == [secrets["FIELD_ENCRYPTION_KEY"]]


def test_development_secrets_returns_the_same_values_on_a_second_call(tmp_path):
    path = tmp_path / "dev-secrets.json"

    first = development_secrets(path)
    second = development_secrets(path)

    assert second == first
    assert development_secrets(tmp_path / "other.json") != first


def test_development_secrets_fills_in_a_missing_key_and_keeps_the_existing_one(tmp_path):
    path = tmp_path / "dev-secrets.json"
    path.write_text(json.dumps({"SECRET_KEY": "keep-me", "FIELD_ENCRYPTION_KEY": ""}))

    secrets = development_secrets(path)

    assert secrets["SECRET_KEY"] == "keep-me"
    Fernet(secrets["FIELD_ENCRYPTION_KEY"])  # raises if it is not a key
    assert json.loads(path.read_text()) == secrets
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_development_secrets_reports_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "dev-secrets.json"
    path.write_text("{not json")

    with pytest.raises(ImproperlyConfigured, match=r"dev-secrets\.json is not readable JSON"):
        development_secrets(path)


SETUP = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='trading_site.settings'; django.setup()"


def run_django_setup(**overrides):
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", SETUP], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )


def test_settings_refuse_to_start_without_secrets_when_debug_is_off():
    result = run_django_setup(DEBUG="0")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_settings_start_with_secrets_and_a_sqlite_database(tmp_path):
    result = run_django_setup(
        DEBUG="0",
        SECRET_KEY="subprocess-test-secret-key",
        FIELD_ENCRYPTION_KEY=new_key(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'desk.sqlite3'}",
    )

    assert result.stderr == ""
    assert result.returncode == 0


def test_settings_refuse_a_debug_value_that_is_not_a_boolean():
    result = run_django_setup(DEBUG="banana", SECRET_KEY="x", FIELD_ENCRYPTION_KEY=new_key())

    assert result.returncode != 0
    assert "DEBUG='banana' is not a boolean" in result.stderr


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_treats_an_empty_value_as_unset(monkeypatch, default):
    # SECURE_COOKIES= in an env file must not quietly turn secure cookies off.
    monkeypatch.setenv(VAR, "  ")
    assert env_bool(VAR, default=default) is default


def test_a_socket_directory_host_is_percent_decoded(tmp_path):
    settings = database_from_url("postgres://desk@%2Fvar%2Frun%2Fpostgresql/desk", base_dir=tmp_path)
    assert settings["HOST"] == "/var/run/postgresql"


def test_a_local_env_file_fills_in_only_what_the_environment_lacks(tmp_path, monkeypatch):
    from trading_site.env import load_env_file

    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n\nDESK_ENV_PROBE_A=from-file\nexport DESK_ENV_PROBE_B='quoted value'\n"
        'DESK_ENV_PROBE_C="set outside"\n'
    )
    monkeypatch.delenv("DESK_ENV_PROBE_A", raising=False)
    monkeypatch.delenv("DESK_ENV_PROBE_B", raising=False)
    monkeypatch.setenv("DESK_ENV_PROBE_C", "from the environment")
    load_env_file(env_file)
    assert os.environ["DESK_ENV_PROBE_A"] == "from-file"
    assert os.environ["DESK_ENV_PROBE_B"] == "quoted value"
    assert os.environ["DESK_ENV_PROBE_C"] == "from the environment"
    for name in ("DESK_ENV_PROBE_A", "DESK_ENV_PROBE_B"):
        monkeypatch.delenv(name)


def test_a_malformed_env_file_line_is_reported_with_its_number(tmp_path):
    from trading_site.env import load_env_file

    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=1\nthis is not a setting\n")
    with pytest.raises(ImproperlyConfigured, match=r"\.env, line 2: expected NAME=value"):
        load_env_file(env_file)


def test_a_missing_env_file_is_fine(tmp_path):
    from trading_site.env import load_env_file

    load_env_file(tmp_path / "absent.env")  # a server sets its environment itself


def test_a_rate_limit_must_be_a_count_per_period(monkeypatch):
    monkeypatch.setenv("API_THROTTLE_USER", "600/min")
    assert env_rate("API_THROTTLE_USER", "1/s") == "600/min"
    monkeypatch.setenv("API_THROTTLE_USER", "lots")
    with pytest.raises(ImproperlyConfigured, match="API_THROTTLE_USER='lots' must be a count per period"):
        env_rate("API_THROTTLE_USER", "1/s")
