"""Configuration: defaults, validation naming the key, env override, the README reference."""

from pathlib import Path

import pytest

from proxycheck.config import describe, load_settings, reference_markdown, settings_from_dict
from proxycheck.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_point_at_public_endpoints():
    s = settings_from_dict({}, "defaults")
    assert s.targets.judge_url.startswith("http://") and s.targets.ssl_url.startswith("https://")
    assert len(s.targets.image_urls) == 2 and any(u.startswith("http://") for u in s.targets.image_urls)
    assert s.resolved_database_url.startswith("sqlite:///") and s.resolved_database_url.endswith("state/proxycheck.db")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"targetz": {}}, "unknown key 'targetz'"),
        ({"targets": {"judge": "x"}}, "[targets]: unknown key 'judge'"),
        ({"targets": {"judge_url": "https://x/get"}}, "[targets].judge_url"),
        ({"targets": {"ssl_url": "http://x/"}}, "[targets].ssl_url"),
        ({"targets": {"image_urls": "http://x/a.png"}}, "[targets].image_urls: expected a list of strings"),
        ({"timeouts": {"read": "10"}}, "[timeouts].read: expected a number"),
        ({"timeouts": {"connect": 0}}, "[timeouts].connect must be greater than 0"),
        ({"check": {"concurrency": 0}}, "[check].concurrency must be at least 1"),
        ({"health": {"rise": 0}}, "health.rise"),
        ({"health": {"jitter": 2.0}}, "health.jitter"),
        ({"daemon": {"sources": "a.csv"}}, "[daemon].sources"),
        ({"database_url": "proxycheck.db"}, "database_url"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "f.toml")
    assert message in str(info.value)


def test_file_env_and_relative_paths(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('state_dir = "st"\n[daemon]\nsources = ["p.csv"]\n[targets]\nca_file = "ca.pem"\n')
    s = load_settings(str(cfg), environ={})
    assert s.state_dir == str(tmp_path / "st") and s.daemon.sources == (str(tmp_path / "p.csv"),)
    assert s.targets.ca_file == str(tmp_path / "ca.pem")
    s = load_settings(str(cfg), environ={"PROXYCHECK_DATABASE_URL": "postgresql://db/x"})
    assert s.resolved_database_url == "postgresql://db/x"
    monkeypatch.setenv("PROXYCHECK_CONFIG", str(cfg))
    assert load_settings(None).source_file == str(cfg)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "nope.toml"), environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[targets\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(bad), environ={})


def test_example_config_is_valid_and_complete():
    s = load_settings(str(ROOT / "proxycheck.example.toml"), environ={})
    assert s.daemon.sources
    text = (ROOT / "proxycheck.example.toml").read_text()
    for section, key, _, _ in describe():
        if section in ("", "targets", "timeouts", "health"):
            assert f"{key} =" in text, f"proxycheck.example.toml does not show {section}.{key}"


def test_readme_reference_is_current():
    assert reference_markdown() in (ROOT / "README.md").read_text(), "regenerate the README's config reference"
