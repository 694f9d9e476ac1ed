"""config.yaml + environment overrides -> one validated :class:`Settings` object.

Search order (DESIGN.md): ``--config``, ``MIMIR_CONFIG``, ``./config.yaml`` (and the original's
``config.yml``, ``mimir.yaml``, ``mimir.yml``), the user config dir, ``/etc/mimir/config.yaml``.
Relative paths in a file resolve against that file's folder; relative paths given in the
environment resolve against the working directory. An unknown key, a wrong type or a bad value
is a :class:`ConfigError` that names the key and the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails

from .errors import BadInput, ConfigError
from .inputs import shown, zone_info
from .safeio import MAX_PIPELINE_FILE_BYTES, MAX_STEP_INPUT_BYTES, safe_load
from .secrets import MASK, is_secret_key, mask_tree, mask_url  # mask_url: persistence.engine imports it from here

CONFIG_NAMES = ("config.yaml", "config.yml", "mimir.yaml", "mimir.yml")

# Environment variable -> (section, key, is_path)
ENV_OVERRIDES: dict[str, tuple[str, str, bool]] = {
    "MIMIR_DATABASE_PATH": ("persistence", "database_path", True),
    "MIMIR_VECTOR_DB_PATH": ("persistence", "vector_db_path", True),
    "MIMIR_BACKEND": ("persistence", "backend", False),
    "MIMIR_CONNECTION_STRING": ("persistence", "connection_string", False),
    "MIMIR_LOG_LEVEL": ("logging", "level", False),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PersistenceSettings(_Section):
    """The seed's ``persistence`` section, key for key, plus tuning knobs of our own."""

    enabled: bool = True
    backend: Literal["sqlite", "postgres", "mysql"] = "sqlite"
    database_path: str = "./data/mimir.db"
    connection_string: str = ""
    vector_db_path: str = "./data/chromem.db"
    enable_vector_db: bool = True
    backup_enabled: bool = False
    backup_path: str = "./backups"
    retention_days: int = Field(30, ge=0)
    # Ours: backups (mimir_tui.ops.backup). Rotation keeps the union of the last N archives, the
    # newest of each of the last N days and of the last N ISO weeks; all three 0 keeps every one.
    backup_keep_last: int = Field(7, ge=0)
    backup_keep_daily: int = Field(7, ge=0)
    backup_keep_weekly: int = Field(4, ge=0)
    backup_schedule: str = "0 2 * * *"  # when backup_enabled: cron, fired once across all instances
    backup_compress: bool = False  # gzip the archive (smaller, several times slower)
    backup_encrypt: bool = False  # encrypt every archive (as `backup create --encrypt`)
    backup_passphrase_env: str = "MIMIR_BACKUP_PASSPHRASE"  # the variable holding the passphrase
    backup_key_file: str = ""  # or a file holding the key (wins over the variable)
    # Ours: retention keeps each job's latest N runs whatever their age (0: age alone decides),
    # and runs once a day across all instances at this cron time (scheduler.timezone).
    retention_keep_last: int = Field(0, ge=0)
    retention_schedule: str = "30 3 * * *"
    # Ours: SQLite lock wait, connection pool, connect timeout.
    busy_timeout_ms: int = Field(5000, ge=0)
    pool_size: int = Field(5, ge=1)
    connect_timeout: float = Field(10.0, gt=0)

    @field_validator("enabled")
    @classmethod
    def _needs_its_store(cls, value: bool) -> bool:
        # The original kept jobs in memory when false. Mimir's jobs, runs, queue and instances
        # live in its database (other processes and machines share them through it): it cannot
        # run without one, and must not pretend to.
        if not value:
            raise ValueError(
                "false is not supported: Mimir keeps its jobs, runs and queue in its database and "
                "cannot run without one (remove the key or set it to true)"
            )
        return value

    @field_validator("retention_schedule", "backup_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from .scheduler.cron import validate_cron  # croniter: loaded with a config, not with --help

        try:
            return validate_cron(value)
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_alias(cls, value: Any) -> Any:
        aliases = {"postgresql": "postgres", "pg": "postgres", "mariadb": "mysql", "sqlite3": "sqlite"}
        if isinstance(value, str):
            value = value.strip().lower()
            return aliases.get(value, value)
        return value


class SchedulerSettings(_Section):
    enabled: bool = True
    timezone: str = "UTC"
    poll_interval: float = Field(1.0, gt=0)
    max_jobs: int = Field(0, ge=0)  # 0: no limit (the original's key)
    max_concurrency: int = Field(4, ge=1)
    default_timeout: float | None = Field(None, gt=0)
    history_retention: int | None = Field(None, ge=0)  # the original's key; persistence.retention_days wins
    heartbeat_interval: float = Field(5.0, gt=0)
    stale_after: float = Field(30.0, gt=0)
    shutdown_grace: float = Field(30.0, ge=0)
    # Seconds a run that has ended keeps trying to save its end while the database is away
    # (then it is left to the usual recovery: interrupted, and retried if its job allows).
    outcome_save_window: float = Field(300.0, ge=0)
    misfire_grace: float = Field(60.0, ge=0)
    # Seconds an instance whose run slots are all taken (or, on a server, that has claimed as
    # many runs as it can start soon) leaves a due fire to its peers (load balancing); 0: never.
    defer_when_busy: float = Field(5.0, ge=0)
    # The queues this instance fires and runs jobs of (a job's ``queue``; default "default").
    queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1)

    @model_validator(mode="after")
    def _beats_before_stale(self) -> SchedulerSettings:
        # A peer is declared dead after stale_after seconds of silence: it must have had time
        # to beat at least twice, or live instances would reap each other.
        if self.stale_after < 2 * self.heartbeat_interval:
            raise ValueError(
                f"stale_after ({self.stale_after:g} s) must be at least twice heartbeat_interval "
                f"({self.heartbeat_interval:g} s)"
            )
        return self

    @field_validator("queues")
    @classmethod
    def _queues(cls, value: list[str]) -> list[str]:
        from .persistence.models import check_queue_name

        for name in value:
            check_queue_name(name)
        if len(set(value)) != len(value):
            raise ValueError(f"a queue is listed twice: {value}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone_info(value)  # ValueError naming it
        return value


class PipelinesSettings(_Section):
    directory: str = "./pipelines"
    # The folder relative paths in steps resolve against (Output.json's file, System.command's
    # cwd...), for every run whichever way it starts. None: each pipeline file's own folder
    # (a pipeline stored without a file: the config file's folder).
    working_dir: str | None = None
    watch: bool = True
    summary_max_chars: int = Field(2000, ge=16)
    max_file_bytes: int = Field(MAX_PIPELINE_FILE_BYTES, ge=1)  # a larger pipeline file is refused


class PluginsSettings(_Section):
    directories: list[str] = Field(default_factory=lambda: ["./plugins"])
    timeout: float = Field(300.0, gt=0)
    max_concurrency: int = Field(4, ge=1)
    # What a step may read: a file (Input.file), an HTTP response (Input.api, Input.rss, AIModels).
    max_file_bytes: int = Field(MAX_STEP_INPUT_BYTES, ge=1)
    max_response_bytes: int = Field(MAX_STEP_INPUT_BYTES, ge=1)


class SecuritySettings(_Section):
    """Where pipeline steps may reach (docs/security.md); everything is allowed by default."""

    read_paths: list[str] | None = None  # folders file plugins may read; None: anywhere
    write_paths: list[str] | None = None  # folders file plugins may write; None: anywhere
    block_private_networks: bool = False  # HTTP plugins: refuse loopback, private, link-local addresses
    allowed_hosts: list[str] = Field(default_factory=list)  # host names or IP networks the block lets through
    # The original's keys (it had a web server), accepted so its files load; Mimir does not use them.
    original: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _set_aside_the_originals(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(key in ORIGINAL_SECURITY_KEYS for key in data):
            data = dict(data)
            data["original"] = {key: data.pop(key) for key in list(data) if key in ORIGINAL_SECURITY_KEYS}
        return data

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        hosts = []
        for entry in value:
            text = entry.strip().lower()
            try:
                text = str(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if not HOST_NAME.match(text):
                    raise ValueError(f"not a host name or an IP network: {entry!r}") from None
            hosts.append(text)
        return hosts


HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")
ORIGINAL_SECURITY_KEYS = frozenset(
    {"enable_auth", "jwt_secret", "token_expiry", "allowed_origins", "cors_origins", "api_keys"}
    | {"rate_limit", "enable_https", "cert_file", "key_file"}
)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"
    output: Literal["stdout", "file", "both"] = "both"
    file_path: str = "./logs/mimir.log"
    executions_dir: str = "./logs/executions"
    max_size: int = Field(10, ge=1)  # MiB
    max_backups: int = Field(5, ge=0)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value


class UISettings(_Section):
    theme: str = "mimir"
    refresh_interval: float = Field(2.0, gt=0)
    page_size: int = Field(200, ge=10)
    # The dashboard runs a scheduler in-process (the service's: fires, claims, heartbeats).
    run_scheduler: bool = True


class VectorsSettings(_Section):
    """The vector store (``mimir_tui.vectors``): embedded at ``persistence.vector_db_path``
    unless a server is named (``server_url``, or ``mode: server`` with ``host`` and ``port``)."""

    mode: Literal["persistent", "server"] = "persistent"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # A shared `chroma run` server: several instances use one store through it (an embedded
    # store must have one writer). Set, it wins over mode/host/port.
    server_url: str | None = None
    # The embedder of new collections: offline (wordllama, shipped with Mimir, no download),
    # openai (an OpenAI-compatible /v1/embeddings endpoint: Ollama, vLLM...), chroma
    # (chromadb's own all-MiniLM-L6-v2, when its files are already on the machine).
    embedding: Literal["offline", "openai", "chroma"] = "offline"
    embedding_url: str = "http://127.0.0.1:11434/v1"
    embedding_model: str = "nomic-embed-text"
    embedding_api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (never the key)
    timeout: float = Field(30.0, gt=0)  # seconds per request to the server or the embedding endpoint
    default_collection: str = "documents"

    @field_validator("embedding", mode="before")
    @classmethod
    def _embedding_alias(cls, value: Any) -> Any:
        # "default" was chromadb's default model in the config file's comments before there
        # was a store.
        return "chroma" if value == "default" else value

    @field_validator("server_url", "embedding_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value.strip() == "":
            if info.field_name == "server_url":
                return None
            raise ValueError("must be an http:// or https:// URL")
        value = value.strip().rstrip("/")
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {mask_url(value)!r})")
        return value

    def server(self) -> str | None:
        """The server's URL, or None for the embedded store."""
        if self.server_url:
            return self.server_url
        if self.mode == "server":
            return f"http://{self.host}:{self.port}"
        return None


class Settings(BaseModel):
    """The whole, validated configuration; paths are absolute."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    persistence: PersistenceSettings = Field(default_factory=PersistenceSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    pipelines: PipelinesSettings = Field(default_factory=PipelinesSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    ui: UISettings = Field(default_factory=UISettings)
    vectors: VectorsSettings = Field(default_factory=VectorsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    # The original's section, read so its config files load; Mimir does not use it.
    server: dict[str, Any] = Field(default_factory=dict)

    # Where the config came from, and the source of every value that is not a default.
    config_path: Path | None = Field(default=None, exclude=True)
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)

    def without_effect(self) -> dict[str, list[str]]:
        """What was set (in the file or the environment) that Mimir reads but does not act on,
        by the reason why: ``{"the original's web server; Mimir has none": ["server"]}``; a key set
        by an environment variable is named by the variable."""
        found: dict[str, list[str]] = {}
        for name, reason in NO_EFFECT:
            for key, source in self.sources.items():
                if key == name or key.startswith(name + "."):
                    shown = source[4:] if source.startswith("env ") else (name if "." not in name else key)
                    keys = found.setdefault(reason, [])
                    if shown not in keys:
                        keys.append(shown)
        return found

    def no_effect_notice(self) -> str | None:
        """One line naming what has no effect and why (None if nothing): logged once when the
        service or the dashboard starts, and printed by ``config show``."""
        found = self.without_effect()
        if not found:
            return None
        parts = "; ".join(f"{', '.join(keys)} ({reason})" for reason, keys in found.items())
        return f"{self.config_path or 'config'}: set but without effect: {parts}"

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, with passwords and the values of
        secret-looking keys (``password``, ``token``, ``api_key``, ``secret``...) masked."""
        data = self.model_dump(mode="json")
        data["persistence"]["connection_string"] = mask_url(self.persistence.connection_string)
        for key in ("server_url", "embedding_url"):
            if data["vectors"][key]:
                data["vectors"][key] = mask_url(data["vectors"][key])
        return mask_tree(data)


# Keys accepted (the seed's, the original's, or ours for what comes later) that change nothing,
# and why. Set, they are named once at start rather than silently ignored; persistence.enabled
# is refused instead (PersistenceSettings).
WEB_SECURITY = "the original's, for its web server; Mimir has none"
NO_EFFECT: tuple[tuple[str, str], ...] = (
    ("scheduler.max_jobs", "the original's; scheduler.max_concurrency limits the runs at once"),
    ("scheduler.history_retention", "the original's; persistence.retention_days sets retention"),
    ("server", "the original's web server; Mimir has none"),
    *((f"security.{key}", WEB_SECURITY) for key in sorted(ORIGINAL_SECURITY_KEYS)),
)

PATH_KEYS = {
    ("persistence", "database_path"),
    ("persistence", "vector_db_path"),
    ("persistence", "backup_path"),
    ("persistence", "backup_key_file"),
    ("pipelines", "directory"),
    ("pipelines", "working_dir"),
    ("logging", "file_path"),
    ("logging", "executions_dir"),
}
PATH_LIST_KEYS = {("plugins", "directories"), ("security", "read_paths"), ("security", "write_paths")}


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, by the search order; None if there is none."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path.resolve()
    env = os.environ.get("MIMIR_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"MIMIR_CONFIG: config file {path} does not exist")
        return path.resolve()
    candidates: list[Path] = [Path.cwd() / name for name in CONFIG_NAMES]
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates += [Path(xdg) / "mimir" / name for name in ("config.yaml", "config.yml")]
    candidates += [Path("/etc/mimir") / name for name in ("config.yaml", "config.yml")]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): is it a config file?") from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {type(data).__name__}")
    # A section whose keys are all commented out reads as null: it means "all defaults".
    return {section: ({} if values is None else values) for section, values in data.items()}


def _describe(error: ErrorDetails) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = error.get("input")
    value = MASK if any(is_secret_key(str(p)) for p in error["loc"]) else shown(mask_tree(given))
    if isinstance(given, str) and "://" in given:
        value = shown(mask_url(given))
    return f"key {key!r}: {msg} (got {value})"


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    environ: dict[str, str] | None = None,
    use_search: bool = True,
) -> Settings:
    """Find, read, override from the environment, validate and resolve the configuration."""
    env = os.environ if environ is None else environ
    path = find_config(config) if (config or use_search) else None
    raw: dict[str, Any] = _read_yaml(path) if path else {}
    where = str(path) if path else "defaults"
    base = path.parent if path else Path.cwd()

    sources: dict[str, str] = {}
    for section, values in raw.items():
        if isinstance(values, dict):
            for key in values:
                sources[f"{section}.{key}"] = f"file {path}"

    # Resolve relative paths from the file against the file's folder, before env overrides.
    for section, key in PATH_KEYS:
        value = raw.get(section, {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(value, str) and value:
            raw[section][key] = str((base / Path(value).expanduser()).resolve())
    for section, key in PATH_LIST_KEYS:
        values = raw[section].get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(values, list):
            raw[section][key] = [
                str((base / Path(d).expanduser()).resolve()) if isinstance(d, str) else d for d in values
            ]

    for name, (section, key, is_path) in ENV_OVERRIDES.items():
        value = env.get(name)
        if value is None or value == "":
            continue
        if is_path:
            value = str(Path(value).expanduser().resolve())
        if not isinstance(raw.get(section), dict):
            if section in raw and raw[section] is not None:
                break  # let validation report the wrong type of the section
            raw[section] = {}
        raw[section][key] = value
        sources[f"{section}.{key}"] = f"env {name}"

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        origin = sources.get(key, where)
        if origin.startswith("env "):
            raise ConfigError(f"{origin[4:]}: {_describe(first)}") from None
        raise ConfigError(f"{path or where}: {_describe(first)}") from None

    # Defaults that are relative paths resolve against the config folder (or the cwd).
    for section, key in PATH_KEYS:
        sub = getattr(settings, section)
        if f"{section}.{key}" not in sources and getattr(sub, key):  # None or "": unset
            setattr(sub, key, str((base / getattr(sub, key)).resolve()))
    if "plugins.directories" not in sources:
        settings.plugins.directories = [str((base / d).resolve()) for d in settings.plugins.directories]
    settings.config_path = path
    settings.sources = sources
    return settings
