"""Configuration: defaults, validation naming the key, env override, the generated reference (docs/configuration.md)."""

import re
from pathlib import Path

import certifi
import pytest

from proxycheck.config import describe, load_settings, reference_markdown, settings_from_dict
from proxycheck.config_targets import example_toml
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
        ({"targetz": {}}, "f.toml: unknown key 'targetz'"),
        ({"targets": {"judge": "x"}}, "f.toml: [targets]: unknown key 'judge'"),
        ({"targets": {"judge_url": "https://x/get"}}, "[targets].judge_url: 'https://x/get' is not a http:// URL"),
        ({"targets": {"ssl_url": "http://x/"}}, "[targets].ssl_url: 'http://x/' is not a https:// URL"),
        ({"targets": {"judge_urls": ["http://a/get", "https://b/get"]}}, "[targets].judge_urls: 'https://b/get' is not a http:// URL"),
        ({"targets": {"judge_urls": []}}, "[targets].judge_urls: the list is empty; name at least one judge"),
        ({"targets": {"judge_urls": "http://a/get"}}, "[targets].judge_urls"),
        ({"targets": {"judge_url": "http://a/get", "judge_urls": ["http://b/get"]}},
         "[targets].judge_url: give either judge_url or judge_urls, not both"),
        ({"targets": {"judge_url": "http://["}}, "[targets].judge_url: 'http://[' is not a URL"),
        ({"targets": {"ban_url": "https://x:99999/"}}, "[targets].ban_url: 'https://x:99999/' is not a usable URL"),
        ({"targets": {"ip_url": "http://x:0/"}}, "[targets].ip_url: 'http://x:0/' is not a usable URL"),
        ({"targets": {"long_get_url": "http://a b/"}}, "[targets].long_get_url: 'http://a b/' is not a usable URL"),
        ({"targets": {"image_urls": ["http://x/a.png", "ftp://x/b.png"]}}, "[targets].image_urls: 'ftp://x/b.png'"),
        ({"targets": {"judge_url": "http://127.0.0.1:28711/get/€"}},
         "[targets].judge_url: 'http://127.0.0.1:28711/get/€' has non-ASCII characters an HTTP request cannot carry"),
        ({"targets": {"judge_url": "http://127.0.0.1/get/€"}}, "percent-encode the path and query (€ is %E2%82%AC)"),
        ({"targets": {"ssl_url": "https://bücher.example/"}}, "[targets].ssl_url: 'https://bücher.example/' has non-ASCII characters"),
        ({"targets": {"ssl_url": "https://bücher.example/"}}, "in its IDNA form (xn--...)"),
        ({"targets": {"ban": [{"name": "eu", "url": "https://x/é", "preset": "recaptcha"}]}},
         "[targets].ban[0].url: 'https://x/é' has non-ASCII characters an HTTP request cannot carry"),
        ({"probes": {"user_agent": "prüfer €"}},
         "[probes].user_agent: 'prüfer €' is not a header value the probes can send (printable ASCII, not empty)"),
        ({"probes": {"user_agent": " "}}, "[probes].user_agent: ' ' is not a header value"),
        ({"targets": {"image_urls": "http://x/a.png"}}, "[targets].image_urls: expected a list of strings"),
        ({"timeouts": {"read": "10"}}, "[timeouts].read: expected a number (a finite number between 0.1 and 600), got '10'"),
        ({"timeouts": {"connect": 0}}, "[timeouts].connect: must be a finite number between 0.1 and 600, got 0"),
        ({"timeouts": {"probe": float("nan")}}, "[timeouts].probe: must be a finite number between 0.1 and 3600, got nan"),
        ({"timeouts": {"connect": 30, "probe": 20}}, "[timeouts].connect: must be at most [timeouts].probe (20), got 30"),
        ({"check": {"concurrency": 0}}, "[check].concurrency: must be a whole number between 1 and 10000, got 0"),
        ({"check": {"concurrency": 5.0}}, "[check].concurrency: expected a whole number"),
        ({"check": {"concurrency": True}}, "[check].concurrency: expected a whole number"),
        ({"health": {"rise": 0}}, "[health].rise: must be a whole number between 1 and 100, got 0"),
        ({"health": {"jitter": 2.0}}, "[health].jitter: must be a finite number between 0 and 0.9, got 2.0"),
        ({"health": {"interval": float("inf")}}, "[health].interval: must be a finite number between 1 and 86400, got inf"),
        ({"health": {"fast_interval": 600}}, "[health].fast_interval: must be at most [health].interval (300), got 600"),
        ({"health": {"failing_interval": 60, "max_interval": 30}}, "[health].failing_interval: must be at most [health].max_interval (30)"),
        ({"daemon": {"sources": "a.csv"}}, "[daemon].sources: expected a list of strings"),
        ({"daemon": {"sources": ["a.csv", " "]}}, "[daemon].sources: must be a path, not empty"),
        ({"state_dir": ""}, "f.toml: state_dir: must be a path, not empty"),
        ({"daemon": {"sync_interval": float("inf")}}, "[daemon].sync_interval: must be a finite number between 1 and 86400"),
        ({"daemon": {"sources": ["a\x00.csv"]}}, "[daemon].sources: control character '\\x00'"),
        ({"probes": {"user_agent": "x\r\nX-Evil: 1"}}, "[probes].user_agent: control character '\\r'"),
        ({"http": {"enabled": 1}}, "[http].enabled: expected true or false, got 1"),
        ({"http": {"listen": "127.0.0.1:²"}}, "[http].listen: '127.0.0.1:²' is not HOST:PORT"),
        ({"http": {"token": "S3cr3t-but-31-characters-long.."}}, "[http].token: must be at least 32 characters"),
        ({"worker": {"max_age": float("inf")}}, "[worker].max_age: must be a finite number greater than 0 and at most 604800, got inf"),
        ({"worker": {"max_age": 60}}, "[worker].max_age: must be at least [health].interval (300), got 60"),
        ({"worker": {"strategy": "fair"}}, "[worker].strategy: must be one of random, round_robin, least_used, fastest, got 'fair'"),
        ({"database_url": "proxycheck.db"}, "database_url: the database URL is not a URL"),
        ({"database_url": "mysql://u:S3cr3t@db/x"}, "database_url: unsupported database mysql://u:***@db/x"),
        ({"database_url": "postgresql+asyncpg://db/x"}, "database_url: unsupported database driver"),
        ({"database_url": "sqlite://"}, "database_url: sqlite:// is an in-memory SQLite database"),
        ({"database_url": "postgresql://db:x/y"}, "database_url: the database URL is not a URL"),
        ({"check": {"source_address": "fra-1"}}, "[check].source_address: 'fra-1' is not an IP address"),
        ({"check": {"source_address": "192.0.2.77"}}, "[check].source_address: 192.0.2.77 cannot be sent from (not an "
                                                      "address of this machine)"),
        ({"check": {"vantages": ["b"]}}, "[check].vantages: 'b' is not NAME=ADDRESS"),
        ({"check": {"vantages": ["b=192.0.2.77"]}}, "[check].vantages: 192.0.2.77 cannot be sent from"),
        ({"check": {"vantage": "a=b"}}, "[check].vantage: 'a=b' is not a vantage name"),
        ({"solver": {"services": ["deathbycaptcha"]}}, "[solver].services: 'deathbycaptcha' is not a service we know"),
        ({"solver": {"allow_ip_locked": "yes"}}, "[solver].allow_ip_locked: expected true or false"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "f.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("f.toml: ")


@pytest.mark.parametrize(
    "data",
    [
        {"http": {"token": 12345}},
        {"http": {"token": "S3cr3t\n"}},
        {"http": {"token": "S3cr3t"}},
        {"database_url": "mysql://u:S3cr3t@db/x"},
        {"database_url": "postgresql://u:S3cr3t@db\x01/x"},
    ],
)
def test_secrets_never_appear_in_errors(data):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "f.toml")
    assert "S3cr3t" not in str(info.value) and "12345" not in str(info.value)


def test_good_values_at_the_edges_of_their_ranges_are_accepted():
    s = settings_from_dict(
        {
            "database_url": "postgresql://u@db/x",
            "timeouts": {"connect": 0.1, "read": 600, "probe": 600},
            "health": {"rise": 1, "fall": 100, "interval": 86400, "fast_interval": 1, "jitter": 0},
            "worker": {"max_reported_percent": 100, "snapshot_seconds": 0},
            "targets": {"judge_url": "http://[::1]:8080/get", "image_urls": []},
            "http": {"listen": "[::1]:8181"},
        },
        "f.toml",
    )
    assert (s.health.interval, s.worker.max_age, s.timeouts.read) == (86400.0, 3 * 86400.0, 600.0)
    assert isinstance(s.timeouts.read, float) and isinstance(s.health.rise, int)


def test_sections_built_in_code_are_checked_like_the_file():
    """A ``HealthPolicy`` or ``WorkerSettings`` made in Python has the same ranges as the file."""
    from proxycheck.health import HealthPolicy
    from proxycheck.worker.settings import WorkerSettings

    with pytest.raises(ConfigError, match=r"^health\.interval: must be a finite number between 1 and 86400, got inf"):
        HealthPolicy(interval=float("inf"))
    with pytest.raises(ConfigError, match=r"^\[worker\]\.max_age: must be a finite number greater than 0"):
        WorkerSettings(max_age=float("nan"))


def test_file_env_and_relative_paths(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('state_dir = "st"\n[daemon]\nsources = ["p.csv"]\n[targets]\nca_file = "ca.pem"\n')
    (tmp_path / "ca.pem").write_text(Path(certifi.where()).read_text())
    s = load_settings(str(cfg), environ={})
    assert s.state_dir == str(tmp_path / "st") and s.daemon.sources == (str(tmp_path / "p.csv"),)
    assert s.targets.ca_file == str(tmp_path / "ca.pem")
    s = load_settings(str(cfg), environ={"PROXYCHECK_DATABASE_URL": "postgresql://db/x"})
    assert s.resolved_database_url == "postgresql://db/x"
    monkeypatch.setenv("PROXYCHECK_CONFIG", str(cfg))
    assert load_settings(None).source_file == str(cfg)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[targets\n", "not valid TOML"),
        (b'state_dir = "\xff"\n', "not valid TOML: not UTF-8 (byte 13)"),
        (b"a = " + b"[" * 5000, "not valid TOML"),
    ],
)
def test_broken_files(tmp_path, content, message):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(str(bad), environ={})


def test_missing_files_and_directories(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "nope.toml"), environ={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(str(tmp_path), environ={})


def test_the_ca_file_must_load(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[targets]\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigError, match=r"c.toml: \[targets\].ca_file: cannot load .*ca.pem as a CA bundle: No such file"):
        load_settings(str(cfg), environ={})
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"\[targets\].ca_file: cannot load .*ca.pem as a CA bundle: no PEM certificate"):
        load_settings(str(cfg), environ={})
    (tmp_path / "ca.pem").write_text(Path(certifi.where()).read_text())
    assert load_settings(str(cfg), environ={}).targets.ca_file == str(tmp_path / "ca.pem")


def test_the_environment_database_url_is_checked_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^environment: PROXYCHECK_DATABASE_URL: unsupported database mysql://u:\*\*\*@db/x"):
        load_settings(None, environ={"PROXYCHECK_DATABASE_URL": "mysql://u:pw@db/x"})


EXAMPLE = ROOT / "proxycheck.example.toml"
EXAMPLE_BEGIN = "# -- generated from the probes' target specs: python tests/unit/test_config.py --\n"
EXAMPLE_END = "\n# -- end of the generated [targets] keys --"


def example_with_current_targets(text: str) -> str:
    """``text`` (the example config) with its [targets] keys regenerated from the registry."""
    head, found, rest = text.partition(EXAMPLE_BEGIN)
    _, found_end, tail = rest.partition(EXAMPLE_END)
    assert found and found_end, "proxycheck.example.toml lost the markers around its [targets] keys"
    return head + EXAMPLE_BEGIN + example_toml() + EXAMPLE_END + tail


def test_example_config_targets_are_current():
    text = EXAMPLE.read_text()
    assert example_with_current_targets(text) == text, "run `python tests/unit/test_config.py` to regenerate them"


def test_example_config_is_valid_and_complete():
    s = load_settings(str(ROOT / "proxycheck.example.toml"), environ={})
    assert s.daemon.sources
    text = (ROOT / "proxycheck.example.toml").read_text()
    for section, key, _, _ in describe():
        if section in ("", "targets", "timeouts", "health"):
            shown = "[[targets.ban]]" if (section, key) == ("targets", "ban") else f"{key} ="
            assert shown in text, f"proxycheck.example.toml does not show {section}.{key}"


REFERENCE = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- generated by proxycheck.config.reference_markdown(); tests/unit/test_config.py keeps it in sync -->\n"
END = "\n<!-- end of the generated config reference -->"


def with_current_reference(text: str) -> str:
    """``text`` (docs/configuration.md) with the table between BEGIN and END regenerated."""
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    assert found and found_end, "docs/configuration.md lost the markers around its config reference"
    return head + BEGIN + reference_markdown() + END + tail


def test_config_reference_is_current():
    text = REFERENCE.read_text()
    assert with_current_reference(text) == text, "run `python tests/unit/test_config.py` to regenerate it"


if __name__ == "__main__":  # regenerate docs/configuration.md's config reference and the example's [targets] keys
    REFERENCE.write_text(with_current_reference(REFERENCE.read_text()))
    EXAMPLE.write_text(example_with_current_targets(EXAMPLE.read_text()))
