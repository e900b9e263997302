"""Test-wide settings: property tests judged on correctness, not on how busy the machine is."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# CI runs on 2 shared cores: a per-example deadline would fail correct code under load.
settings.register_profile("cosmolocal", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cosmolocal")
