"""cvm.bicep: confidential VM security profile, private-only NIC, secrets only in secure slots."""

from __future__ import annotations

from cotenant.bicep_params import declared_parameters
from cotenant.deployments import module_path
from tests.bicep.conftest import PASSWORD, SCRIPT, SSH_KEY, evaluated
from tests.bicep.template import Ref


def test_nic_has_the_static_private_ip_and_no_public_ip(plan):
    template = evaluated(plan, "cvm")
    (nic,) = template.of_type("Microsoft.Network/networkInterfaces")
    (config,) = nic.properties["ipConfigurations"]
    props = config["properties"]
    assert props["privateIPAllocationMethod"] == "Static"
    assert props["privateIPAddress"] == "10.0.1.4" == plan.party("contoso").private_ip
    assert "publicIPAddress" not in props
    assert nic.properties["enableIPForwarding"] is False
    assert props["subnet"]["id"].args["resource_name_2"] == plan.network.vm_subnet.name


def test_no_public_ip_anywhere_in_the_module(plan):
    template = evaluated(plan, "cvm")
    assert not template.of_type("Microsoft.Network/publicIPAddresses")


def test_vm_is_a_confidential_vm_with_confidential_os_disk_encryption(plan):
    template = evaluated(plan, "cvm")
    (vm,) = template.of_type("Microsoft.Compute/virtualMachines")
    props = vm.properties
    assert props["securityProfile"] == {
        "securityType": "ConfidentialVM",
        "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True},
    }
    disk = props["storageProfile"]["osDisk"]["managedDisk"]["securityProfile"]
    assert disk["securityEncryptionType"] == "DiskWithVMGuestState"
    assert disk["diskEncryptionSet"]["id"] == Ref("des.id")
    (des,) = template.of_type("Microsoft.Compute/diskEncryptionSets", include_existing=True)
    assert des.body["name"] == plan.party("contoso").des_name
    assert props["hardwareProfile"]["vmSize"] == "Standard_DC2as_v5"
    assert props["diagnosticsProfile"]["bootDiagnostics"]["enabled"] is False


def test_vm_runs_as_the_party_identity(plan):
    template = evaluated(plan, "cvm")
    (vm,) = template.of_type("Microsoft.Compute/virtualMachines")
    assert vm.body["identity"]["type"] == "UserAssigned"
    assert list(vm.body["identity"]["userAssignedIdentities"]) == ["identity.id"]
    (identity,) = template.of_type(
        "Microsoft.ManagedIdentity/userAssignedIdentities", include_existing=True
    )
    assert identity.existing and identity.body["name"] == plan.party("contoso").identity_name


def test_image_is_ubuntu_24_04_cvm(plan):
    (vm,) = evaluated(plan, "cvm").of_type("Microsoft.Compute/virtualMachines")
    assert vm.properties["storageProfile"]["imageReference"] == {
        "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "cvm", "version": "latest"
    }


def test_ssh_key_login_disables_password_authentication(plan):
    (vm,) = evaluated(plan, "cvm").of_type("Microsoft.Compute/virtualMachines")
    os_profile = vm.properties["osProfile"]
    assert os_profile["adminPassword"] is None
    linux = os_profile["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"][0]["keyData"] == SSH_KEY


def test_password_login_uses_the_password_and_no_ssh_key(plan):
    template = evaluated(plan, "cvm", ssh_public_key=None, admin_password=PASSWORD)
    (vm,) = template.of_type("Microsoft.Compute/virtualMachines")
    os_profile = vm.properties["osProfile"]
    assert os_profile["adminPassword"] == PASSWORD
    assert os_profile["linuxConfiguration"]["ssh"] is None


def test_bootstrap_runs_from_protected_settings_only(plan):
    template = evaluated(plan, "cvm")
    (ext,) = template.of_type("Microsoft.Compute/virtualMachines/extensions")
    props = ext.properties
    assert (props["publisher"], props["type"]) == ("Microsoft.Azure.Extensions", "CustomScript")
    assert "settings" not in props
    script = props["protectedSettings"]["script"]
    assert script.name == "base64" and script.args["input_string"] == SCRIPT


def test_credentials_and_script_are_secure_parameters():
    declared = declared_parameters(module_path("cvm"))
    assert declared["adminPasswordOrKey"].secure
    assert declared["bootstrapScript"].secure
    assert declared["authenticationType"].allowed == ("password", "sshPublicKey")
