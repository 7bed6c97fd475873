"""A new key version is made apart from the lab's state (before its lock is taken): it holds
a fresh key of the requested (or, rotated, the inherited) size; invalid requests fail."""

from __future__ import annotations

import pytest

from cotenant.lab.ca import load_private
from cotenant.lab.http import HttpError
from cotenant.lab.vault import keys as kv

POLICY = {"data": "eyJ2ZXJzaW9uIjoiMS4wLjAiLCJhbnlPZiI6W3siYXV0aG9yaXR5IjoiaHR0cHM6Ly9hLm5ldS"
                  "5hdHRlc3QuYXp1cmUubmV0IiwiYWxsT2YiOlt7ImNsYWltIjoieCIsImVxdWFscyI6InkifV19XX0"}


def test_a_version_holds_a_new_key_of_its_size_and_a_rotation_keeps_the_size() -> None:
    request = {"kty": "RSA-HSM", "key_size": 3072, "attributes": {"exportable": True},
               "release_policy": POLICY}
    version = kv.new_version(request)
    assert load_private(version.material.encode()).key_size == 3072
    rotated = kv.new_version({}, inherit=version)
    assert load_private(rotated.material.encode()).key_size == 3072
    assert rotated.material != version.material


def test_other_keys_hold_no_rsa_key_and_invalid_requests_fail() -> None:
    oct_version = kv.new_version({"kty": "oct-HSM", "key_size": 256})
    assert len(bytes.fromhex(oct_version.material)) == 32
    for bad, field in (({"kty": "RSA-HSM", "key_size": 1024}, "key_size"),
                       ({"kty": "EC-HSM"}, "kty")):
        with pytest.raises(HttpError) as info:
            kv.new_version(bad)
        assert info.value.status == 400 and field in info.value.message
