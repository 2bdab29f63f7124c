"""The probe registry is the only list: names, targets and self-tests agree with the config."""

import dataclasses

from proxycheck.config import Targets
from proxycheck.probes import REGISTRY, SUITE, declared_targets


def test_names_are_unique_and_suite_follows_the_registry():
    names = [spec.name for spec in REGISTRY]
    assert len(names) == len(set(names)) and list(SUITE) == names


def test_every_target_key_is_some_probes_and_every_declared_key_exists():
    """A [targets] key no probe declares would be fetched by nobody (or by a self-test that has
    drifted from the probes); ip_url is the self-test's own, ca_file is not a URL."""
    keys = {f.name for f in dataclasses.fields(Targets)} - {"ip_url", "ca_file"}
    assert set(declared_targets()) == keys


def test_a_probe_with_targets_has_a_self_test():
    for spec in REGISTRY:
        assert bool(spec.targets) == (spec.selftest is not None), spec.name


def test_the_summary_comes_from_exactly_one_probe_each():
    seen: dict[str, str] = {}
    for spec in REGISTRY:
        for key in spec.summary:
            assert key not in seen, f"{key} from both {seen[key]} and {spec.name}"
            seen[key] = spec.name
    assert {"exit_ip", "anonymity", "latency_ms", "detail", "targets"} == set(seen)


def test_the_probes_never_import_the_config():
    """config_targets.py builds [targets] from the probes' specs; the other way round would be a
    cycle. Importing every probe module (late imports in function bodies included: the source
    is searched too) loads no ``proxycheck.config*`` module but ``config_keys``."""
    import pathlib
    import re
    import subprocess
    import sys

    probes_dir = pathlib.Path(__file__).resolve().parents[2] / "proxycheck" / "probes"
    names = sorted(p.stem for p in probes_dir.glob("*.py") if p.stem != "__init__")
    code = ("import sys, importlib\n"
            f"for n in {names!r}: importlib.import_module('proxycheck.probes.' + n)\n"
            "print(' '.join(m for m in sys.modules if m.startswith('proxycheck.config') and m != 'proxycheck.config_keys'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
    for path in probes_dir.glob("*.py"):
        assert not re.search(r"from \.\.config(_\w+)? import|from \.\. import .*\bconfig\b", path.read_text()), path.name
