"""A new key version's RSA key is drawn apart from the version (before the lab's state lock)
and the version holds exactly that key."""

from __future__ import annotations

import pytest

from cotenant.lab.ca import load_private
from cotenant.lab.http import HttpError
from cotenant.lab.vault import keys as kv

POLICY = {"data": "eyJ2ZXJzaW9uIjoiMS4wLjAiLCJhbnlPZiI6W3siYXV0aG9yaXR5IjoiaHR0cHM6Ly9hLm5ldS"
                  "5hdHRlc3QuYXp1cmUubmV0IiwiYWxsT2YiOlt7ImNsYWltIjoieCIsImVxdWFscyI6InkifV19XX0"}


def test_a_version_holds_the_drawn_key_of_its_size() -> None:
    request = {"kty": "RSA-HSM", "key_size": 3072, "attributes": {"exportable": True},
               "release_policy": POLICY}
    material = kv.rsa_material(request)
    assert material is not None and load_private(material.encode()).key_size == 3072
    version = kv.new_version(request, material=material)
    assert version.material == material
    rotated = kv.rsa_material({}, inherit=version)  # a rotation draws one of the same size
    assert rotated is not None and load_private(rotated.encode()).key_size == 3072
    assert kv.new_version({}, inherit=version, material=rotated).material == rotated


def test_no_key_is_drawn_for_other_keys_and_invalid_requests_still_fail() -> None:
    assert kv.rsa_material({"kty": "oct-HSM", "key_size": 256}) is None
    assert kv.rsa_material({"kty": "EC-HSM"}) is None
    bad = {"kty": "RSA-HSM", "key_size": 1024}
    assert kv.rsa_material(bad) is None
    with pytest.raises(HttpError) as info:
        kv.new_version(bad, material=None)
    assert info.value.status == 400 and "key_size" in info.value.message
