"""Fault injection on lab endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient

from cotenant.lab.testing import RunningLab


@pytest.fixture
def faults(lab: RunningLab) -> Iterator[RunningLab]:
    try:
        yield lab
    finally:
        lab.client.set_faults([])


def _token_request(lab: RunningLab) -> requests.Response:
    env = lab.environ()
    return requests.get(env["IDENTITY_ENDPOINT"], headers={
        "X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}, params={
        "api-version": "2019-08-01", "resource": "https://vault.azure.net"}, timeout=10)


def test_throttle_error_latency_and_drop(faults: RunningLab) -> None:
    client = faults.client
    client.set_faults([{"service": "identity", "kind": "throttle", "retry_after": 7,
                        "count": 1}])
    throttled = _token_request(faults)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert _token_request(faults).status_code == 200  # count=1: only once

    client.set_faults([{"service": "identity", "kind": "error", "status": 503}])
    assert _token_request(faults).status_code == 503

    client.set_faults([{"service": "identity", "kind": "latency", "latency_ms": 300}])
    started = time.monotonic()
    assert _token_request(faults).status_code == 200
    assert time.monotonic() - started >= 0.3

    client.set_faults([{"service": "identity", "kind": "drop", "count": 1}])
    with pytest.raises(requests.exceptions.RequestException):
        _token_request(faults)

    client.set_faults([{"service": "identity", "kind": "error", "fraction": 0.0}])
    assert _token_request(faults).status_code == 200


def test_sdk_retries_through_vault_throttling(faults: RunningLab,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in faults.environ().items():
        monkeypatch.setenv(key, value)
    url = faults.client.create_vault("kv-faults-1")
    faults.client.set_faults([{"service": "vault", "path": "/keys$", "kind": "throttle",
                               "retry_after": 0, "count": 2}])
    assert list(KeyClient(url, ManagedIdentityCredential()).list_properties_of_keys()) == []


def test_invalid_fault_rules_are_refused(faults: RunningLab) -> None:
    from cotenant.lab.client import LabError

    with pytest.raises(LabError) as info:
        faults.client.set_faults([{"kind": "explode"}])
    assert info.value.status == 400
