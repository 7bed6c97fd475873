"""Every Bicep file in the repository parses with pycep-parser, and outputs never leak secrets."""

from __future__ import annotations

import json

import pytest

from cotenant.bicep_params import declared_parameters, parse_bicep
from cotenant.plan import ENCRYPTION_ROLE_ID, OFFICER_ROLE_ID, RELEASE_ROLE_ID
from tests.bicep.conftest import REPO
from tests.bicep.template import identifiers_in

BICEP_FILES = sorted((REPO / "bicep").rglob("*.bicep"))
SECRET_WORDS = ("password", "secret", "privatekey", "connectionstring", "sas", "token")


def test_the_expected_modules_exist():
    names = {p.relative_to(REPO / "bicep").as_posix() for p in BICEP_FILES}
    assert {
        "tenant/network.bicep", "tenant/party.bicep", "tenant/grants.bicep", "tenant/cvm.bicep",
        "tenant/gateway.bicep", "tenant/bastion.bicep", "control-plane/main.bicep",
        "control-plane/resources.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_parses_with_pycep(path):
    template = parse_bicep(path)
    assert template["resources"], "a module that declares no resource"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_outputs_never_carry_secure_parameters(path):
    secure = {n for n, p in declared_parameters(path).items() if p.secure}
    for name, output in (parse_bicep(path).get("outputs") or {}).items():
        assert not identifiers_in(output["value"]) & secure, f"output {name} uses a secret"
        assert not any(word in name.lower() for word in SECRET_WORDS), f"output {name}"
        assert not any(d["type"] == "secure" for d in output.get("decorators") or [])


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_secret_looking_parameters_are_secure(path):
    for name, info in declared_parameters(path).items():
        if any(word in name.lower() for word in ("password", "secret", "script")):
            assert info.secure, f"{name} must be @secure()"


def test_role_ids_agree_everywhere():
    tenant = json.loads((REPO / "bicep" / "tenant" / "roles.json").read_text())
    control = json.loads((REPO / "bicep" / "control-plane" / "roles.json").read_text())
    expected = {
        "keyVaultCryptoServiceEncryptionUser": ENCRYPTION_ROLE_ID,
        "keyVaultCryptoServiceReleaseUser": RELEASE_ROLE_ID,
    }
    for roles in (tenant, control):
        assert {k: roles[k] for k in expected} == expected
        # Crypto Officer (keys/* includes release) is neither assigned nor delegable
        assert OFFICER_ROLE_ID not in roles.values()
    shared = set(tenant) & set(control)
    assert {k: tenant[k] for k in shared} == {k: control[k] for k in shared}
    # every role a tenant module assigns is one the control plane may delegate
    main = (REPO / "bicep" / "control-plane" / "main.bicep").read_text()
    granted = main.split("var tenantGrantRoles = [")[1].split("]")[0]
    assert {line.strip().removeprefix("roles.") for line in granted.strip().splitlines()} == set(
        tenant)
    assert "var delegableRoles = concat([keyOperatorRoleId], tenantGrantRoles)" in main
