"""Region → shared attestation authority map."""

from __future__ import annotations

import json

from cotenant.regions import SHARED_AUTHORITIES, known_regions, normalize_region, shared_authority
from tests.conftest import FIXTURES


def test_reference_regions():
    assert shared_authority("northeurope") == "https://sharedneu.neu.attest.azure.net"
    assert shared_authority("North Europe") == "https://sharedneu.neu.attest.azure.net"
    assert shared_authority("eastus") == "https://sharedeus.eus.attest.azure.net"
    assert shared_authority("westeurope") == "https://sharedweu.weu.attest.azure.net"
    assert shared_authority("southeastasia") == "https://sharedsasia.sasia.attest.azure.net"


def test_unknown_region_has_no_authority():
    assert shared_authority("atlantis") is None
    assert shared_authority("") is None


def test_at_least_the_seed_coverage():
    assert len(known_regions()) >= 46
    assert normalize_region(" West US 3 ") == "westus3"


def test_every_authority_of_azures_default_cvm_policy_is_known():
    """Azure's published default CVM release policy names shared authorities; all are mapped."""
    default = json.loads((FIXTURES / "policy" / "policy-default-cvm.json").read_text())
    published = {block["authority"].rstrip("/") for block in default["anyOf"]}
    assert published <= set(SHARED_AUTHORITIES.values())
