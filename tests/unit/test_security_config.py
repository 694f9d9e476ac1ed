"""The ``security`` section of config.yaml (where pipeline steps may reach) and the size caps:
paths resolve like the other paths, a typo is an error (a switch that silently stays off is
worse than none), and the original's keys still load."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimir_tui.config import load_settings
from mimir_tui.errors import ConfigError
from mimir_tui.pipelines.policy import Policy


def test_the_section_resolves_paths_against_the_config_folder_and_feeds_the_policy(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (tmp_path / "real").mkdir()
    (folder / "data").symlink_to(tmp_path / "real")
    config = folder / "config.yaml"
    config.write_text(
        "security:\n  read_paths: [./data, /srv/in]\n  write_paths: []\n  block_private_networks: true\n"
        "  allowed_hosts: [Ollama.Internal, 10.1.2.3/8, '::1']\n"
        "plugins:\n  max_file_bytes: 1000\n  max_response_bytes: 2000\npipelines:\n  max_file_bytes: 300\n"
    )
    s = load_settings(config)
    assert s.security.read_paths == [str(tmp_path / "real"), "/srv/in"]  # symlinks resolved
    assert s.security.write_paths == []  # confined to nowhere: every write refused
    assert s.security.allowed_hosts == ["ollama.internal", "10.0.0.0/8", "::1/128"]
    policy = Policy.of(s)
    assert policy.read_paths == (tmp_path / "real", Path("/srv/in")) and policy.write_paths == ()
    assert policy.block_private_networks and policy.allowed_names == {"ollama.internal"}
    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8", "::1/128"]
    assert (policy.max_file_bytes, policy.max_response_bytes, s.pipelines.max_file_bytes) == (1000, 2000, 300)


def test_by_default_nothing_is_confined_and_the_caps_apply() -> None:
    s = load_settings(use_search=False, environ={})
    assert (s.security.read_paths, s.security.write_paths, s.security.block_private_networks) == (None, None, False)
    policy = Policy.of(s)
    assert policy == Policy() and policy.max_response_bytes == 50 << 20 and s.pipelines.max_file_bytes == 1 << 20


@pytest.mark.parametrize(
    "text, message",
    [
        ("security:\n  block_privat_networks: true\n", "unknown key 'security.block_privat_networks'"),
        ("security:\n  allowed_hosts: ['http://x']\n", "not a host name or an IP network: 'http://x'"),
        ("security:\n  read_paths: /srv\n", "key 'security.read_paths'"),
        ("plugins:\n  max_response_bytes: 0\n", "key 'plugins.max_response_bytes'"),
    ],
    ids=["typo", "host", "not-a-list", "zero-cap"],
)
def test_mistakes_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(info.value).startswith(f"{config}: ") and message in str(info.value)


def test_the_originals_security_keys_load_beside_ours(tmp_path: Path) -> None:
    """The original's config.yaml (it had a web server) had these under ``security``."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "security:\n  enable_auth: false\n  jwt_secret: change-me\n  token_expiry: 24\n"
        "  allowed_origins: ['*']\n  rate_limit: 1000\n  enable_https: false\n  cert_file: ''\n  key_file: ''\n"
        "  block_private_networks: true\n"
    )
    s = load_settings(config)
    assert s.security.block_private_networks is True
    assert s.security.original["rate_limit"] == 1000 and s.security.original["allowed_origins"] == ["*"]
    assert "change-me" not in str(s.masked())
