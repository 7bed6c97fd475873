"""cotenant.bicep_params: declared parameters and the checks the lab applies to deployments."""

from __future__ import annotations

import pytest

from cotenant.bicep_params import BicepParseError, check_parameters, declared_parameters

SAMPLE = """
@description('Where it goes.')
param location string
param debug bool = false
@secure()
param adminPassword string
@allowed([
  'Basic'
  'Standard'
])
param sku string
@minLength(3)
@maxLength(5)
param code string
@minValue(1)
@maxValue(3)
param count int
param tags object?
param ranges array

resource pip 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: code
  location: location
}
"""


@pytest.fixture()
def declared(tmp_path):
    path = tmp_path / "sample.bicep"
    path.write_text(SAMPLE, encoding="utf-8")
    return declared_parameters(path)


def test_declared_parameters(declared):
    assert list(declared) == ["location", "debug", "adminPassword", "sku", "code", "count",
                              "tags", "ranges"]
    required = {name for name, info in declared.items() if info.required}
    assert required == {"location", "adminPassword", "sku", "code", "count", "ranges"}
    assert declared["adminPassword"].secure and not declared["location"].secure
    assert declared["sku"].allowed == ("Basic", "Standard")
    assert (declared["code"].min_length, declared["code"].max_length) == (3, 5)
    assert (declared["count"].min_value, declared["count"].max_value) == (1, 3)
    assert declared["location"].description == "Where it goes."
    assert declared["tags"].type == "object" and not declared["tags"].required


def test_valid_values_have_no_problem(declared):
    values = {"location": "northeurope", "adminPassword": "x" * 20, "sku": "Basic",
              "code": "abc", "count": 2, "ranges": [], "debug": True, "tags": None}
    assert check_parameters(declared, values) == []


def test_every_problem_is_reported_and_secrets_are_not_echoed(declared):
    values = {"location": 5, "adminPassword": "s3cr3t-value", "sku": "Premium", "code": "ab",
              "count": 9, "debug": "yes", "extra": 1}
    problems = check_parameters(declared, values)
    assert "missing required parameter 'ranges'" in problems
    assert "unknown parameter 'extra'" in problems
    assert "parameter 'location' must be of type string, not int" in problems
    assert "parameter 'debug' must be of type bool, not str" in problems
    assert any("'Premium' is not one of" in p for p in problems)
    assert "parameter 'code' is shorter than 3" in problems
    assert "parameter 'count' is above 3" in problems
    assert not any("s3cr3t" in p for p in problems)


def test_a_bool_is_not_an_int(declared):
    problems = check_parameters(declared, {"count": True})
    assert "parameter 'count' must be of type int, not bool" in problems


def test_secure_values_are_masked_in_allowed_errors(tmp_path):
    path = tmp_path / "s.bicep"
    path.write_text("@secure()\n@allowed([\n  'a'\n])\nparam token string\n"
                    "resource r 'Microsoft.Resources/tags@2022-09-01' = {\n  name: 'default'\n}\n")
    problems = check_parameters(declared_parameters(path), {"token": "leaked"})
    assert problems == ["parameter 'token': (secure value) is not one of ['a']"]


def test_unparseable_or_missing_files_raise_one_error_type(tmp_path):
    broken = tmp_path / "broken.bicep"
    broken.write_text("param = = =\n")
    with pytest.raises(BicepParseError, match="broken.bicep"):
        declared_parameters(broken)
    with pytest.raises(BicepParseError):
        declared_parameters(tmp_path / "missing.bicep")


def test_a_changed_file_is_parsed_again(tmp_path):
    path = tmp_path / "m.bicep"
    path.write_text(SAMPLE)
    assert "location" in declared_parameters(path)
    path.write_text(SAMPLE.replace("param location string", "param region string") + "\n")
    assert "region" in declared_parameters(path)
