"""Where an exit is (proxycheck/geo.py): every vendor layout, the mismatch sentence, the config
errors naming the key, and a database that changes or vanishes under a running checker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geodb import geo_toml, write
from proxycheck import geo
from proxycheck.config import load_settings
from proxycheck.errors import ConfigError
from proxycheck.geo import ExitGeo, GeoLookup, mismatch

PLACES = {
    "127.0.2.0/25": ("DE", 3320, "Deutsche Telekom AG"),
    "127.0.2.128/25": ("US", 64500, None),
    "2001:db8::/32": ("FR", 64501, "Example FR"),
    "127.0.3.0/24": (None, 64502, "AS without a country"),
}
LAYOUTS = ["geolite2", "dbip", "ipinfo", "ipinfo-country-asn"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.2.7", ExitGeo("DE", 3320, "Deutsche Telekom AG")),
        ("127.0.2.200", ExitGeo("US", 64500, None)),
        ("2001:db8::9", ExitGeo("FR", 64501, "Example FR")),
        ("127.0.3.1", ExitGeo(None, 64502, "AS without a country")),
        ("127.0.4.1", ExitGeo()),  # not in the database: unknown
        ("::1", ExitGeo()),
        ("not an ip", ExitGeo()),
        (None, ExitGeo()),
    ],
)
def test_each_vendor_layout_gives_country_and_asn(tmp_path, layout, ip, expected):
    database, asn_database = write(tmp_path, layout, PLACES)
    assert GeoLookup(str(database), str(asn_database or "")).lookup(ip) == expected


def test_country_file_alone_gives_no_asn(tmp_path):
    database, _ = write(tmp_path, "geolite2", PLACES)
    assert GeoLookup(str(database)).lookup("127.0.2.7") == ExitGeo("DE", None, None)


@pytest.mark.parametrize(
    ("tags", "where", "sentence"),
    [
        ({"country:us"}, ExitGeo("DE", 3320, "Deutsche Telekom AG"), "tagged US, exits in DE, AS3320 Deutsche Telekom AG"),
        ({"Country:US"}, ExitGeo("DE", None, None), "tagged US, exits in DE"),
        ({"country:us", "country:ca", "fast"}, ExitGeo("DE", 3320, None), "tagged CA or US, exits in DE, AS3320"),
        ({"country:us"}, ExitGeo("US", 3320, "x"), None),
        ({"country:US", "country:de"}, ExitGeo("DE", 3320, "x"), None),
        ({"us"}, ExitGeo("DE", 3320, "x"), None),  # not a country claim
        ({"country:usa"}, ExitGeo("DE", 3320, "x"), None),  # not an ISO code
        ({"country:us"}, ExitGeo(), None),  # unknown exit: no claim can be checked
        ({"country:us"}, ExitGeo(None, 3320, "x"), None),
        ({"country:us"}, None, None),  # no [geo]
    ],
)
def test_mismatch_sentence(tags, where, sentence):
    assert mismatch(frozenset(tags), where) == sentence


def config_with(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "proxycheck.toml"
    path.write_text(table)
    return path


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[geo]\ndatabase = "missing.mmdb"\n', "[geo].database: {dir}/missing.mmdb does not exist"),
        ('[geo]\ndatabase = "bad.mmdb"\n', "[geo].database: {dir}/bad.mmdb is not a MaxMind DB (.mmdb) file"),
        ('[geo]\ndatabase = "sub"\n', "[geo].database: {dir}/sub is a directory"),
        ('[geo]\ndatabase = "good.mmdb"\nasn_database = "bad.mmdb"\n', "[geo].asn_database: {dir}/bad.mmdb is not"),
        ('[geo]\nasn_database = "good.mmdb"\n', "[geo].asn_database: set [geo].database too"),
        ('[geo]\ndatabase = 5\n', "[geo].database: expected a string"),
        ('[geo]\ncountry_db = "x"\n', "[geo]: unknown key 'country_db'"),
    ],
)
def test_a_bad_database_is_a_config_error_naming_the_key(tmp_path, table, message):
    (tmp_path / "bad.mmdb").write_text("not a database\n")
    (tmp_path / "sub").mkdir()
    database, _ = write(tmp_path, "ipinfo", PLACES)
    database.rename(tmp_path / "good.mmdb")
    with pytest.raises(ConfigError) as error:
        load_settings(str(config_with(tmp_path, table)))
    assert message.format(dir=tmp_path) in str(error.value)


def test_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    database, asn_database = write(tmp_path, "geolite2", PLACES)
    monkeypatch.chdir("/")
    settings = load_settings(str(config_with(tmp_path, geo_toml(Path(database.name), Path(asn_database.name)))))
    assert settings.geo.database == str(database) and settings.geo.asn_database == str(asn_database)
    assert geo.from_settings(settings.geo).lookup("127.0.2.7").asn == 3320


def test_a_changed_database_is_read_again_and_a_vanished_one_keeps_the_copy(tmp_path, monkeypatch):
    """geo.py rule 3: a refresh takes effect without a restart; a file gone or broken at run time
    leaves the copy read before in use, says why, and raises nothing."""
    monkeypatch.setattr(geo, "RECHECK", 0.0)
    database, _ = write(tmp_path, "ipinfo", PLACES)
    lookup = GeoLookup(str(database))
    assert lookup.lookup("127.0.2.7").country == "DE" and lookup.problem is None

    database.unlink()
    assert lookup.lookup("127.0.2.7").country == "DE"
    assert lookup.problem is not None and "[geo].database" in lookup.problem and "does not exist" in lookup.problem

    database.write_bytes(b"half a download")
    assert lookup.lookup("127.0.2.7").country == "DE" and "not a MaxMind DB" in (lookup.problem or "")

    (tmp_path / "new").mkdir()
    fresh, _ = write(tmp_path / "new", "ipinfo", {**PLACES, "127.0.2.0/25": ("NL", 3320, "Deutsche Telekom AG")})
    os.replace(fresh, database)  # as geoipupdate does: a new file renamed into place
    assert lookup.lookup("127.0.2.7").country == "NL" and lookup.problem is None
