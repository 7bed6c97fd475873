"""grants.bicep: the release role on ONE key for each listed principal; nothing vault-wide."""

from __future__ import annotations

import pytest

from cotenant.deployments import DeploymentInputError, module_parameters
from cotenant.plan import RELEASE_ROLE_ID
from tests.bicep.conftest import PRINCIPALS, evaluated


def _assignments(template):
    return template.of_type("Microsoft.Authorization/roleAssignments")


@pytest.mark.parametrize(
    ("owner", "grantees"),
    [("contoso", ["contoso", "woodgrove"]), ("fabrikam", ["fabrikam", "woodgrove"]),
     ("woodgrove", ["woodgrove"])],
)
def test_each_key_is_releasable_by_exactly_the_access_matrix(plan, owner, grantees):
    template = evaluated(plan, "grants", party=owner)
    assignments = _assignments(template)
    assert sorted(str(a.properties["principalId"]) for a in assignments) == sorted(
        PRINCIPALS[g] for g in grantees
    )
    for a in assignments:
        assert a.body["scope"].path == "key"
        assert a.properties["roleDefinitionId"].args["resource_name_1"] == RELEASE_ROLE_ID
        assert a.properties["principalType"] == "ServicePrincipal"
    (key,) = template.of_type("Microsoft.KeyVault/vaults/keys", include_existing=True)
    assert key.existing, "grants never create the key (the app key exists before)"
    assert key.body["name"] == f"{owner}-secret-key"
    (vault,) = template.of_type("Microsoft.KeyVault/vaults", include_existing=True)
    assert vault.existing and vault.body["name"] == plan.party(owner).vault_name


def test_grants_deploy_nothing_but_role_assignments(plan):
    types = {r.type for r in evaluated(plan, "grants", party="woodgrove").deployed()}
    assert types == {"Microsoft.Authorization/roleAssignments"}


def test_missing_or_malformed_principal_ids_are_rejected(plan):
    with pytest.raises(DeploymentInputError) as err:
        module_parameters(plan, "grants", "contoso",
                          principal_ids={"contoso": PRINCIPALS["contoso"]})
    assert "woodgrove" in str(err.value)
    with pytest.raises(DeploymentInputError, match="not a GUID"):
        module_parameters(plan, "grants", "woodgrove", principal_ids={"woodgrove": "nope"})
    with pytest.raises(DeploymentInputError, match="principal_ids is required"):
        module_parameters(plan, "grants", "woodgrove")


def test_unlisted_principals_are_not_granted(plan):
    extra = {**PRINCIPALS, "mallory": "44444444-4444-4444-8444-444444444444"}
    params = module_parameters(plan, "grants", "woodgrove", principal_ids=extra)
    assert params["principalIds"] == [PRINCIPALS["woodgrove"]]
