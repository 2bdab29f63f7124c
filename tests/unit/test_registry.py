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
