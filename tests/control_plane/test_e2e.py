"""End to end: lab + devhost + Azurite, the real guest agents in simulated CVMs."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


def deploy(stack, spec, timeout: float = 120):
    r = stack.http("POST", "/api/tenants", json=spec)
    assert r.status_code == 202, r.text
    status = stack.wait(spec["name"], timeout=timeout)
    return status


def test_three_parties_deploy_attested_and_verified(stack, spec, lab_stack):
    spec["name"] = "threep"
    started = time.monotonic()
    status = deploy(stack, spec)
    assert status.runtime_status == "Completed", status.custom_status
    elapsed = time.monotonic() - started
    r = stack.http("GET", "/api/tenants/threep")
    assert r.status_code == 200
    body = r.json()
    print(elapsed, body["timeline"])
    assert all(p["attested"] for p in body["parties"])
