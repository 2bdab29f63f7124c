"""Small MaxMind-format (.mmdb) databases for tests, in each layout the free vendors ship (geo.py
rule 2), written with ``mmdb-writer``: the loopback world's exits get countries and ASes.
"""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network -> (country, asn, as organisation); what each vendor's file says about it.
Place = tuple[str | None, int | None, str | None]

# database_type as each vendor writes it (the reader does not go by it: geo.py rule 2).
TYPES = {"geolite2": ("GeoLite2-Country", "GeoLite2-ASN"), "dbip": ("DBIP-Country-Lite", "DBIP-ASN-Lite"),
         "ipinfo": ("ipinfo_lite.mmdb", None), "ipinfo-country-asn": ("ipinfo country_asn.mmdb", None)}


def _country_record(layout: str, place: Place) -> dict:
    country, asn, org = place
    if layout in ("geolite2", "dbip"):
        return {"country": {"iso_code": country, "names": {"en": country}}} if country else {}
    record: dict = {}
    if layout == "ipinfo":  # IPinfo Lite: country_code, country (the name), asn "AS3320", as_name
        record = {"country_code": country, "country": f"name of {country}"} if country else {}
    else:  # IPinfo's older country_asn: country is the code
        record = {"country": country, "country_name": f"name of {country}"} if country else {}
    if asn is not None:
        record.update(asn=f"AS{asn}", as_name=org or "", as_domain="example.net")
    return record


def write(directory: Path, layout: str, places: dict[str, Place]) -> tuple[Path, Path | None]:
    """The ``[geo]`` files of ``layout`` for ``places``: (database, asn_database or None)."""
    country_type, asn_type = TYPES[layout]
    main = MMDBWriter(ip_version=6, database_type=country_type, ipv4_compatible=True)
    for network, place in places.items():
        record = _country_record(layout, place)
        if record:
            main.insert_network(IPSet([network]), record)
    database = directory / f"{layout}-country.mmdb"
    main.to_db_file(str(database))
    if asn_type is None:
        return database, None
    asns = MMDBWriter(ip_version=6, database_type=asn_type, ipv4_compatible=True)
    for network, (_, asn, org) in places.items():
        if asn is not None:
            record = {"autonomous_system_number": asn, **({"autonomous_system_organization": org} if org else {})}
            asns.insert_network(IPSet([network]), record)
    asn_database = directory / f"{layout}-asn.mmdb"
    asns.to_db_file(str(asn_database))
    return database, asn_database


def geo_toml(database: Path, asn_database: Path | None) -> str:
    """The ``[geo]`` table for those files."""
    return f'\n[geo]\ndatabase = "{database}"\n' + (f'asn_database = "{asn_database}"\n' if asn_database else "")
