"""config.yaml + environment -> Settings: search order, paths, overrides, validation, masking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mimir_tui.cli import main as cli_main
from mimir_tui.config import Settings, find_config, load_settings, mask_url
from mimir_tui.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
ETC_CONFIG = Path("/etc/mimir")


def error_lines(err: str) -> list[str]:
    """Our error lines on an in-process stderr (other tests' leftover threads may write there too;
    the strict one-line check runs on real processes)."""
    return [line for line in err.splitlines() if line.startswith(("error:", "mimir-tui: error:"))]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def days_config(path: Path, days: int) -> Path:
    return write(path, f"persistence:\n  retention_days: {days}\n")


# -- search order -------------------------------------------------------------------------------


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = Path.cwd()
    xdg = Path(os.environ["XDG_CONFIG_HOME"])
    explicit = days_config(tmp_path / "explicit" / "a.yaml", 1)
    via_env = days_config(tmp_path / "env" / "b.yaml", 2)
    local = days_config(cwd / "config.yaml", 3)
    user = days_config(xdg / "mimir" / "config.yaml", 4)
    monkeypatch.setenv("MIMIR_CONFIG", str(via_env))

    s = load_settings(str(explicit))
    assert (s.persistence.retention_days, s.config_path) == (1, explicit)
    s = load_settings()
    assert (s.persistence.retention_days, s.config_path) == (2, via_env)
    monkeypatch.delenv("MIMIR_CONFIG")
    s = load_settings()
    assert (s.persistence.retention_days, s.config_path) == (3, local)
    local.unlink()
    s = load_settings()
    assert (s.persistence.retention_days, s.config_path) == (4, user)
    user.unlink()
    if ETC_CONFIG.exists():
        pytest.skip("/etc/mimir exists on this machine; tests leave it alone")
    s = load_settings()
    assert s.config_path is None
    assert s.persistence.retention_days == 30
    assert s.sources == {}


def test_cli_config_flag_beats_mimir_config(tmp_path: Path, monkeypatch, capsys) -> None:
    import json

    flag = days_config(tmp_path / "flag.yaml", 11)
    monkeypatch.setenv("MIMIR_CONFIG", str(days_config(tmp_path / "env.yaml", 12)))
    days_config(Path.cwd() / "config.yaml", 13)
    assert cli_main(["config", "show", "--json", "--config", str(flag)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config_file"] == str(flag)
    assert shown["settings"]["persistence"]["retention_days"] == 11


def test_original_file_names_in_the_working_directory() -> None:
    days_config(Path.cwd() / "mimir.yml", 7)
    assert load_settings().persistence.retention_days == 7
    days_config(Path.cwd() / "config.yml", 8)
    assert load_settings().persistence.retention_days == 8
    days_config(Path.cwd() / "config.yaml", 9)
    assert load_settings().persistence.retention_days == 9


def test_home_config_when_xdg_is_unset(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(home))
    path = days_config(home / ".config" / "mimir" / "config.yaml", 5)
    assert find_config() == path
    assert load_settings().persistence.retention_days == 5


def test_missing_explicit_files_are_errors(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_settings(str(missing))
    monkeypatch.setenv("MIMIR_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="MIMIR_CONFIG.*nope.yaml"):
        load_settings()


# -- paths ---------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "deploy" / "conf"
    config = write(
        folder / "mimir.yaml",
        "persistence:\n  database_path: ./data/m.db\n  backup_path: ../backups\n"
        "pipelines:\n  directory: pipelines\nplugins:\n  directories: [./plugins, /abs/plugins]\n"
        "logging:\n  file_path: ~/mimir.log\n",
    )
    s = load_settings(str(config))
    assert s.persistence.database_path == str(folder / "data" / "m.db")
    assert s.persistence.backup_path == str(tmp_path / "deploy" / "backups")
    assert s.pipelines.directory == str(folder / "pipelines")
    assert s.plugins.directories == [str(folder / "plugins"), "/abs/plugins"]
    assert s.logging.file_path == str(Path.home() / "mimir.log")
    # defaults not in the file resolve against the file's folder too, not the working directory
    assert s.persistence.vector_db_path == str(folder / "data" / "chromem.db")
    assert s.logging.executions_dir == str(folder / "logs" / "executions")
    assert Path.cwd() != folder


def test_no_config_means_defaults_under_the_working_directory() -> None:
    s = load_settings(use_search=False)
    cwd = Path.cwd()
    assert s.persistence.backend == "sqlite"
    assert s.persistence.database_path == str(cwd / "data" / "mimir.db")
    assert s.persistence.vector_db_path == str(cwd / "data" / "chromem.db")
    assert s.plugins.directories == [str(cwd / "plugins")]
    assert s.config_path is None


def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "# nothing yet\n")
    assert load_settings(str(empty)).persistence.retention_days == 30
    commented = write(tmp_path / "c.yaml", "persistence:\n  # retention_days: 3\nlogging:\n  level: warn\n")
    s = load_settings(str(commented))
    assert s.persistence.retention_days == 30
    assert s.logging.level == "WARNING"


# -- environment overrides -----------------------------------------------------------------------


def test_environment_overrides_with_sources(tmp_path: Path, monkeypatch) -> None:
    config = write(
        tmp_path / "conf" / "config.yaml",
        "persistence:\n  backend: sqlite\n  database_path: ./file.db\n  retention_days: 9\nlogging:\n  level: info\n",
    )
    monkeypatch.setenv("MIMIR_DATABASE_PATH", "rel/env.db")
    monkeypatch.setenv("MIMIR_VECTOR_DB_PATH", str(tmp_path / "vectors"))
    monkeypatch.setenv("MIMIR_BACKEND", "PostgreSQL")
    monkeypatch.setenv("MIMIR_CONNECTION_STRING", "postgres://u:pw@db/mimir")
    monkeypatch.setenv("MIMIR_LOG_LEVEL", "debug")
    s = load_settings(str(config))
    # a relative path from the environment resolves against the working directory
    assert s.persistence.database_path == str(Path.cwd() / "rel" / "env.db")
    assert s.persistence.vector_db_path == str(tmp_path / "vectors")
    assert s.persistence.backend == "postgres"
    assert s.persistence.connection_string == "postgres://u:pw@db/mimir"
    assert s.logging.level == "DEBUG"
    assert s.persistence.retention_days == 9
    assert s.sources["persistence.database_path"] == "env MIMIR_DATABASE_PATH"
    assert s.sources["persistence.vector_db_path"] == "env MIMIR_VECTOR_DB_PATH"
    assert s.sources["persistence.backend"] == "env MIMIR_BACKEND"
    assert s.sources["persistence.connection_string"] == "env MIMIR_CONNECTION_STRING"
    assert s.sources["logging.level"] == "env MIMIR_LOG_LEVEL"
    assert s.sources["persistence.retention_days"] == f"file {config}"
    assert "ui.theme" not in s.sources


def test_environment_overrides_without_a_file(monkeypatch) -> None:
    monkeypatch.setenv("MIMIR_BACKEND", "mariadb")
    monkeypatch.setenv("MIMIR_LOG_LEVEL", "")  # empty: ignored
    s = load_settings(use_search=False)
    assert s.persistence.backend == "mysql"
    assert s.logging.level == "INFO"
    assert s.sources == {"persistence.backend": "env MIMIR_BACKEND"}


def test_explicit_environ_mapping_is_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIMIR_BACKEND", "postgres")
    s = load_settings(use_search=False, environ={"MIMIR_LOG_LEVEL": "error"})
    assert s.persistence.backend == "sqlite"
    assert s.logging.level == "ERROR"


# -- validation ----------------------------------------------------------------------------------


BAD_CONFIGS = {
    "unknown-key": ("persistence:\n  backend: sqlite\n  bogus_key: 1\n", "persistence.bogus_key"),
    "unknown-section": ("nonsense:\n  a: 1\n", "nonsense"),
    "wrong-type": ("persistence:\n  retention_days: lots\n", "persistence.retention_days"),
    "wrong-type-bool": ("scheduler:\n  enabled: [1]\n", "scheduler.enabled"),
    "section-not-mapping": ("persistence: 5\n", "persistence"),
    "bad-backend": ("persistence:\n  backend: oracle\n", "persistence.backend"),
    "negative": ("persistence:\n  retention_days: -1\n", "persistence.retention_days"),
    "bad-timezone": ("scheduler:\n  timezone: Mars/Olympus_Mons\n", "scheduler.timezone"),
    "bad-port": ("vectors:\n  port: 70000\n", "vectors.port"),
    "bad-level": ("logging:\n  level: loud\n", "logging.level"),
    "list-item": ("plugins:\n  directories: [5]\n", "plugins.directories.0"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_invalid_config_names_key_and_file(name: str, tmp_path: Path) -> None:
    text, key = BAD_CONFIGS[name]
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(path))
    message = str(info.value)
    assert key in message
    assert str(path) in message
    assert "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "text, where",
    [
        ("persistence:\n  backend: sqlite\n bad: [\n", ":3:"),
        ("persistence: {backend: sqlite\n", ":2:"),
        ("\tpersistence:\n", ":1:"),
    ],
    ids=["indent", "unclosed", "tab"],
)
def test_bad_yaml_names_file_and_line(text: str, where: str, tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(path))
    message = str(info.value)
    assert f"{path}{where}" in message and "invalid YAML" in message
    assert "\n" not in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "list.yaml", "- persistence\n- scheduler\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(str(path))


def test_unreadable_config_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path))
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)
    assert info.value.exit_code == 2


def test_invalid_environment_value_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("MIMIR_BACKEND", "oracle")
    with pytest.raises(ConfigError) as info:
        load_settings(use_search=False)
    assert "MIMIR_BACKEND" in str(info.value) and "persistence.backend" in str(info.value)
    monkeypatch.setenv("MIMIR_BACKEND", "sqlite")
    monkeypatch.setenv("MIMIR_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="MIMIR_LOG_LEVEL"):
        load_settings(use_search=False)


@pytest.mark.parametrize("command", [["config", "show"], ["health"], ["config", "show", "--json"]])
def test_invalid_config_through_the_cli_is_exit_2(command, tmp_path: Path, run_cli) -> None:
    path = write(tmp_path / "bad.yaml", "persistence:\n  retention_days: lots\n")
    proc = run_cli(*command, "--config", str(path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "persistence.retention_days" in lines[0] and str(path) in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_invalid_config_in_process_is_exit_2(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "bad.yaml", "persistence:\n  bogus: 1\n")
    assert cli_main(["config", "show", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and "persistence.bogus" in lines[0] and str(path) in lines[0]


# -- the repository's own file and the original's sections ---------------------------------------


def test_repository_config_validates() -> None:
    path = REPO_ROOT / "config.yaml"
    assert path.is_file(), path
    s = load_settings(str(path))
    assert s.config_path == path
    assert s.persistence.backend == "sqlite"
    assert s.persistence.database_path == str(REPO_ROOT / "data" / "mimir.db")
    assert s.persistence.vector_db_path == str(REPO_ROOT / "data" / "chromem.db")
    # the seed's persistence section, key for key: set where the key has an effect, shown
    # commented out where it has none yet (set, it would be named at every start)
    text = path.read_text()
    for key in ("enabled", "backend", "database_path", "connection_string", "retention_days"):
        assert f"persistence.{key}" in s.sources, key
    for key in ("vector_db_path", "enable_vector_db"):  # the vector store (issue 14)
        assert f"persistence.{key}" in s.sources, key
    assert "persistence.backup_enabled" not in s.sources and "\n  # backup_enabled: " in text  # off by default
    assert "persistence.backup_path" in s.sources  # `backup create` writes there
    for section in ("scheduler", "pipelines", "plugins", "logging", "ui", "vectors"):
        assert any(k.startswith(section + ".") for k in s.sources), section
    assert s.vectors.server() is None and s.vectors.embedding == "offline"


@pytest.mark.parametrize("name", ["config.yaml", "deploy/config.yaml", "deploy/config.cluster.yaml"])
def test_the_shipped_configs_set_nothing_without_effect(name: str) -> None:
    s = load_settings(str(REPO_ROOT / name), environ={})
    assert s.without_effect() == {} and s.no_effect_notice() is None


# -- keys without effect (issue 10, item 8) -------------------------------------------------------

ORIGINAL = (
    "server:\n  host: 0.0.0.0\n  port: 8080\n"
    "security:\n  enable_auth: false\n  block_private_networks: true\n"
    "scheduler:\n  max_jobs: 100\n  max_concurrency: 2\n"
    "persistence:\n  enable_vector_db: true\n  vector_db_path: /data/chromem.db\n  backup_enabled: true\n"
    "ui:\n  page_size: 50\n  refresh_interval: 1\n"
    "vectors:\n  mode: server\n  port: 8001\n"
)


def test_keys_without_effect_are_named_with_why_in_one_line(tmp_path: Path) -> None:
    """Silently ignored keys: persistence.enable_vector_db, the vectors section (and the
    original's server keys) were read and did nothing, without a word. (ui.page_size, also in
    the issue, has been used since by the dashboard's Executions pane.)"""
    path = write(tmp_path / "original.yaml", ORIGINAL)
    s = load_settings(str(path), environ={})
    assert s.without_effect() == {
        "the original's; scheduler.max_concurrency limits the runs at once": ["scheduler.max_jobs"],
        "the original's web server; Mimir has none": ["server"],
        "the original's, for its web server; Mimir has none": ["security.enable_auth"],
    }
    notice = s.no_effect_notice()
    assert notice is not None and "\n" not in notice
    assert notice.startswith(f"{path}: set but without effect: scheduler.max_jobs ")
    assert "persistence.backup_enabled" not in notice  # the scheduled backups' system job (issue 13)
    named = [key for keys in s.without_effect().values() for key in keys]
    assert not {"ui.page_size", "scheduler.max_concurrency", "security.block_private_networks"} & set(named)


def test_the_vector_path_set_by_the_environment_has_an_effect_now(tmp_path: Path) -> None:
    s = load_settings(use_search=False, environ={"MIMIR_VECTOR_DB_PATH": str(tmp_path / "v")})
    assert s.without_effect() == {}  # the vector store uses it (issue 14)
    assert load_settings(use_search=False, environ={}).no_effect_notice() is None  # defaults: nothing set


MAX_JOBS = "the original's; scheduler.max_concurrency limits the runs at once"


def test_config_show_prints_the_keys_without_effect(tmp_path: Path, run_cli) -> None:
    path = write(tmp_path / "original.yaml", ORIGINAL)
    shown = run_cli("config", "show", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].startswith(f"# warning: {path}: set but without effect: ")
    as_json = run_cli("config", "show", "--json", "--config", str(path))
    data = json.loads(as_json.stdout)
    assert data["no_effect"][MAX_JOBS] == ["scheduler.max_jobs"]


def test_persistence_disabled_is_refused_with_one_line(tmp_path: Path, run_cli) -> None:
    """``persistence.enabled: false`` (the original's in-memory mode) was accepted, and Mimir
    wrote its SQLite file all the same. Mimir cannot run without its database: refused, exit
    2, one line naming the key and the file, and no database made."""
    path = write(tmp_path / "cfg" / "config.yaml", "persistence:\n  enabled: false\n  database_path: ./data/m.db\n")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path))
    assert str(info.value) == (
        f"{path}: key 'persistence.enabled': false is not supported: Mimir keeps its jobs, runs and queue "
        "in its database and cannot run without one (remove the key or set it to true) (got False)"
    )
    for command in (["jobs", "list"], ["health"]):
        proc = run_cli(*command, "--config", str(path))
        assert proc.returncode == 2 and proc.stderr.splitlines() == [f"mimir-tui: error: {info.value}"]
    assert not (tmp_path / "cfg" / "data").exists()


def test_original_sections_and_keys_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path / "original.yaml",
        "server:\n  host: 0.0.0.0\n  port: 8080\n  read_timeout: 30\n"
        "security:\n  enable_auth: false\n  api_keys: []\n  cors_origins: ['*']\n"
        "scheduler:\n  enabled: true\n  max_jobs: 100\n  default_timeout: 300\n  history_retention: 30\n"
        "logging:\n  level: warn\n  format: json\n  output: stdout\n  max_size: 100\n  max_backups: 3\n"
        "plugins:\n  directories: [./plugins]\n  timeout: 60\n  max_concurrency: 2\n"
        "persistence:\n  enabled: true\n  backend: sqlite\n  database_path: /data/mimir.db\n"
        "  connection_string: ''\n  vector_db_path: /data/chromem.db\n  enable_vector_db: true\n"
        "  backup_enabled: true\n  backup_path: /backups\n  retention_days: 14\n",
    )
    s = load_settings(str(path))
    assert s.server["port"] == 8080
    assert s.security.original["enable_auth"] is False
    assert s.scheduler.max_jobs == 100
    assert s.logging.level == "WARNING" and s.logging.format == "json"
    assert s.persistence.database_path == "/data/mimir.db"
    assert s.persistence.retention_days == 14


# -- masking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgres://user:s3cret@db.example:5432/mimir", "postgres://user:***@db.example:5432/mimir"),
        ("mysql://root:pw@127.0.0.1/mimir?charset=utf8mb4", "mysql://root:***@127.0.0.1/mimir?charset=utf8mb4"),
        ("postgres://user@host/db", "postgres://user@host/db"),
        ("postgres://host/db", "postgres://host/db"),
        ("postgres://:onlypass@host/db", "postgres://:***@host/db"),
        ("postgres://u:p%40ss%3Aw@host/db", "postgres://u:***@host/db"),
        ("postgres://u:p@ss@host/db", "postgres://u:***@host/db"),
        ("postgres://u:pw@[::1]:5432/db", "postgres://u:***@[::1]:5432/db"),
        ("postgres://u:pa/ss@host/db", "postgres://u:***@host/db"),
        ("postgres://u:pa#ss@host:5432/db", "postgres://u:***@host:5432/db"),
        ("mysql://u:pa?ss@host/db", "mysql://u:***@host/db"),
        ("postgres:/u:typo@host/db", "postgres:***@host/db"),
        ("u:secret@host/db", "u:***@host/db"),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='se cret' dbname=d", "host=h password=*** dbname=d"),
        ("", ""),
        ("not a url", "not a url"),
        ("/var/lib/mimir.db", "/var/lib/mimir.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_masked_settings_hide_the_password_and_leave_the_object_alone() -> None:
    s = Settings()
    s.persistence.connection_string = "postgres://u:topsecret@h/db"
    data = s.masked()
    assert data["persistence"]["connection_string"] == "postgres://u:***@h/db"
    assert "topsecret" not in repr(data)
    assert s.persistence.connection_string == "postgres://u:topsecret@h/db"
