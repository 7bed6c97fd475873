"""The parameter contract between the orchestrator and the Bicep modules in ``bicep/tenant/``.

``module_parameters(plan, module, party=None, **inputs)`` returns exactly the parameters one
deployment of ``bicep/tenant/<module>.bicep`` takes (plain values, not ARM ``{"value": ...}``):
the template's required parameters, every one of them, and nothing else. Names and values come
from the :class:`~cotenant.plan.Plan`; what only exists at run time is passed as keyword inputs:

========  ==================  ===============================================================
module    ``party``           keyword inputs
========  ==================  ===============================================================
network   —                   —
party     required            ``operator_principal_id``, ``operator_role_definition_id`` (the
                              GUID of the control plane's "cotenant Key Operator" custom
                              role), ``cvm_orchestrator_object_id``, ``allowed_ip_ranges``,
                              optional ``operator_principal_type``
grants    required (key       ``principal_ids``: grantee party → principal id of its identity
          owner)              (the ``identityPrincipalId`` output of each party deployment)
cvm       required            ``admin_username``, exactly one of ``ssh_public_key`` /
                              ``admin_password``, ``bootstrap_script`` (all secure),
                              optional ``bootstrap_file_uris`` (https URLs fetched by the
                              Custom Script extension next to the script)
gateway   —                   — (the TLS certificate and the identity that reads it come
                              from the spec's ``gateway`` section, via the plan)
bastion   —                   — (debug plans only)
guest-    required            ``storage_account`` (the control plane's), ``principal_id`` (of
access                        the party's identity), ``command_queue`` (its command queue);
                              deployed into the control plane's resource group
data      required (data      ``principal_ids``: reader party → principal id of its identity,
          owner)              for every party in the owner's ``releasable_by`` but the owner
                              (like grants). The uploaders and the IP ranges the account admits
                              come from the plan (the spec's ``data_uploaders`` and
                              ``data_allowed_ip_ranges``)
========  ==================  ===============================================================

Problems with the inputs raise :class:`DeploymentInputError` listing every problem; secret
values never appear in its message.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cotenant.plan import Plan

__all__ = [
    "BICEP_DIR",
    "MODULES",
    "SECURE_INPUTS",
    "DeploymentInputError",
    "data_readers",
    "deployment_name",
    "module_parameters",
    "module_path",
]

MODULES: tuple[str, ...] = (
    "network", "party", "grants", "cvm", "gateway", "bastion", "guest-access", "data",
)
BICEP_DIR = Path(__file__).resolve().parent.parent / "bicep" / "tenant"

# keyword inputs whose values are secrets (never logged, never in errors)
SECURE_INPUTS = frozenset({"admin_password", "ssh_public_key", "bootstrap_script"})

_PARTY_MODULES = frozenset({"party", "grants", "cvm", "guest-access", "data"})
_PRINCIPAL_TYPES = ("ServicePrincipal", "User", "Group")
# Linux user names Azure accepts for the admin account (and not one of its reserved names).
_ADMIN_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_RESERVED_USERNAMES = frozenset({
    "admin", "administrator", "root", "guest", "user", "test", "sys", "daemon", "bin",
    "adm", "lp", "sync", "shutdown", "halt", "mail", "nobody", "support", "ubuntu",
})
_SSH_KEY = re.compile(
    r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$"
)
_STORAGE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_PASSWORD_CLASSES = (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")


class DeploymentInputError(ValueError):
    """The module, party or keyword inputs do not fit; ``problems`` lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def module_path(module: str) -> Path:
    """``bicep/tenant/<module>.bicep``."""
    if module not in MODULES:
        raise DeploymentInputError([f"unknown module {module!r} (one of {', '.join(MODULES)})"])
    return BICEP_DIR / f"{module}.bicep"


def deployment_name(plan: Plan, module: str, party: str | None = None) -> str:
    """The ARM deployment name of one phase: stable, so a re-run updates the same deployment."""
    module_path(module)
    return "-".join(part for part in ("cotenant", plan.tenant, module, party) if part)[:64]


def module_parameters(
    plan: Plan, module: str, party: str | None = None, **inputs: Any
) -> dict[str, Any]:
    """The parameters of one deployment of ``module`` (see the module docstring)."""
    module_path(module)
    problems: list[str] = []
    if module in _PARTY_MODULES:
        if party is None:
            problems.append(f"module {module!r} is deployed per party: pass party=")
        elif party not in {p.party for p in plan.parties}:
            problems.append(f"unknown party {party!r} (plan has {_party_names(plan)})")
    elif party is not None:
        problems.append(f"module {module!r} is not deployed per party (got party={party!r})")
    if problems:
        raise DeploymentInputError(problems)
    builder = _BUILDERS[module]
    inputs_problems = _unexpected_inputs(module, inputs)
    if inputs_problems:
        raise DeploymentInputError(inputs_problems)
    return builder(plan, party, inputs)


# ------------------------------------------------------------------------------ modules


def _network(plan: Plan, _party: str | None, _inputs: dict[str, Any]) -> dict[str, Any]:
    net = plan.network
    return {
        "location": plan.location,
        "vnetName": net.vnet_name,
        "nsgName": net.nsg_name,
        "natGatewayName": f"ng-{plan.tenant}",
        "natPublicIpName": f"pip-{plan.tenant}-nat",
        "vnetCidr": net.address_space,
        "vmSubnetName": net.vm_subnet.name,
        "vmSubnetPrefix": net.vm_subnet.cidr,
        "gatewaySubnetName": net.gateway_subnet.name,
        "gatewaySubnetPrefix": net.gateway_subnet.cidr,
        # only used when debug (the subnet and NSG rule 120 exist only then)
        "bastionSubnetPrefix": net.bastion_subnet.cidr if net.bastion_subnet else "",
        "debug": plan.debug,
    }


def _party(plan: Plan, party: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
    assert party is not None
    p = plan.party(party)
    problems = []
    operator = _guid(inputs, "operator_principal_id", problems)
    operator_role = _guid(inputs, "operator_role_definition_id", problems)
    orchestrator = _guid(inputs, "cvm_orchestrator_object_id", problems)
    principal_type = inputs.get("operator_principal_type", "ServicePrincipal")
    if principal_type not in _PRINCIPAL_TYPES:
        problems.append(f"operator_principal_type must be one of {', '.join(_PRINCIPAL_TYPES)}")
    ip_ranges = _ip_ranges(inputs, problems)
    if problems:
        raise DeploymentInputError(problems)
    return {
        "location": plan.location,
        "identityName": p.identity_name,
        "vaultName": p.vault_name,
        "diskKeyName": p.disk_key_name,
        "desName": p.des_name,
        "diskKeyReleasePolicy": plan.disk_key_release_policy,
        "vnetName": plan.network.vnet_name,
        "vmSubnetName": plan.network.vm_subnet.name,
        "allowedIpRanges": ip_ranges,
        "operatorPrincipalId": operator,
        "operatorPrincipalType": principal_type,
        "operatorRoleDefinitionId": operator_role,
        "cvmOrchestratorObjectId": orchestrator,
    }


def _grants(plan: Plan, party: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
    assert party is not None
    grants = plan.grants_for_key(party)
    if not grants:
        raise DeploymentInputError([f"the plan grants nobody release of {party!r}'s key"])
    owner = plan.party(party)
    return {
        "vaultName": owner.vault_name,
        "keyName": owner.app_key_name,
        "principalIds": _principal_ids(inputs, [g.grantee for g in grants], "grantee"),
    }


def _data(plan: Plan, party: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
    assert party is not None
    owner = plan.party(party)
    return {
        "location": plan.location,
        "storageAccountName": owner.storage_account_name,
        "containerName": owner.data_container,
        "vnetName": plan.network.vnet_name,
        "vmSubnetName": plan.network.vm_subnet.name,
        "allowedIpRanges": _ip_rules(map(ipaddress.ip_network, owner.data_allowed_ip_ranges),
                                     storage=True),
        "readerPrincipalIds": _principal_ids(inputs, data_readers(plan, party), "reader"),
        "uploaderPrincipalIds": [u.lower() for u in owner.data_uploaders],
    }


def data_readers(plan: Plan, party: str) -> list[str]:
    """The parties whose CVM identity may read ``party``'s data container: those allowed to
    release its key, the owner itself excluded."""
    return [g for g in plan.party(party).releasable_by if g != party]


def _cvm(plan: Plan, party: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
    assert party is not None
    p = plan.party(party)
    problems: list[str] = []
    username = inputs.get("admin_username")
    if not isinstance(username, str) or not _ADMIN_USERNAME.match(username):
        problems.append("admin_username must be a Linux user name ([a-z_][a-z0-9_-]{0,31})")
    elif username in _RESERVED_USERNAMES:
        problems.append(f"admin_username {username!r} is reserved by Azure")
    auth_type, credential = _credential(inputs, problems)
    script = inputs.get("bootstrap_script")
    if not isinstance(script, str) or not script.strip():
        problems.append("bootstrap_script must be a non-empty shell script")
    file_uris = inputs.get("bootstrap_file_uris")
    if file_uris is not None and (not isinstance(file_uris, list) or not all(
            isinstance(u, str) and u.startswith("https://") for u in file_uris)):
        problems.append("bootstrap_file_uris must be a list of https URLs")
    if problems:
        raise DeploymentInputError(problems)
    optional = {"bootstrapFileUris": file_uris} if file_uris is not None else {}
    return {
        "location": plan.location,
        "vmName": p.vm_name,
        "computerName": p.computer_name,
        "osDiskName": p.os_disk_name,
        "nicName": p.nic_name,
        "vmSize": plan.vm_size,
        "imageReference": _image_reference(plan.image),
        "privateIpAddress": p.private_ip,
        "vnetName": plan.network.vnet_name,
        "vmSubnetName": plan.network.vm_subnet.name,
        "identityName": p.identity_name,
        "desName": p.des_name,
        "adminUsername": username,
        "authenticationType": auth_type,
        "adminPasswordOrKey": credential,
        "bootstrapScript": script,
        **optional,
    }


def _gateway(plan: Plan, _party: str | None, _inputs: dict[str, Any]) -> dict[str, Any]:
    gw = plan.gateway
    backend_ports = {listener.backend_port for listener in gw.listeners}
    probe_paths = {listener.probe_path for listener in gw.listeners}
    if len(backend_ports) != 1 or len(probe_paths) != 1:
        raise DeploymentInputError(
            ["gateway.bicep has one backend setting: all listeners need the same backend port "
             "and probe path"]
        )
    return {
        "location": plan.location,
        "gatewayName": gw.name,
        "publicIpName": gw.public_ip_name,
        "dnsLabel": gw.dns_label,
        "wafPolicyName": gw.waf_policy_name,
        "tlsCertificateUri": gw.tls_certificate_secret_id,
        "identityId": gw.identity_id,
        "vnetName": plan.network.vnet_name,
        "gatewaySubnetName": plan.network.gateway_subnet.name,
        "backends": [
            {
                "name": listener.party,
                "port": listener.frontend_port,
                "ipAddress": listener.backend_ip,
                "priority": listener.rule_priority,
            }
            for listener in gw.listeners
        ],
        "backendPort": backend_ports.pop(),
        "probePath": probe_paths.pop(),
    }


def _bastion(plan: Plan, _party: str | None, _inputs: dict[str, Any]) -> dict[str, Any]:
    if not plan.debug or plan.bastion is None:
        raise DeploymentInputError(["bastion is deployed only for debug tenants"])
    return {
        "location": plan.location,
        "bastionName": plan.bastion.name,
        "publicIpName": plan.bastion.public_ip_name,
        "vnetName": plan.network.vnet_name,
        "debug": True,
    }


def _guest_access(plan: Plan, party: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
    assert party is not None
    problems: list[str] = []
    account = inputs.get("storage_account")
    if not isinstance(account, str) or not _STORAGE_ACCOUNT.match(account):
        problems.append("storage_account must be a storage account name ([a-z0-9]{3,24})")
    queue = inputs.get("command_queue")
    if not isinstance(queue, str) or not _QUEUE_NAME.match(queue):
        problems.append("command_queue must be a queue name (3-63 of a-z, 0-9, single '-')")
    principal = _guid(inputs, "principal_id", problems)
    if problems:
        raise DeploymentInputError(problems)
    return {"storageAccountName": account, "commandQueueName": queue, "principalId": principal}


_Builder = Callable[[Plan, str | None, dict[str, Any]], dict[str, Any]]
_BUILDERS: dict[str, _Builder] = {
    "network": _network,
    "party": _party,
    "grants": _grants,
    "cvm": _cvm,
    "gateway": _gateway,
    "bastion": _bastion,
    "guest-access": _guest_access,
    "data": _data,
}

_ACCEPTED_INPUTS: dict[str, frozenset[str]] = {
    "network": frozenset(),
    "party": frozenset({"operator_principal_id", "operator_role_definition_id",
                        "cvm_orchestrator_object_id", "allowed_ip_ranges",
                        "operator_principal_type"}),
    "grants": frozenset({"principal_ids"}),
    "cvm": frozenset({"admin_username", "ssh_public_key", "admin_password", "bootstrap_script",
                      "bootstrap_file_uris"}),
    "gateway": frozenset(),
    "bastion": frozenset(),
    "guest-access": frozenset({"storage_account", "principal_id", "command_queue"}),
    "data": frozenset({"principal_ids"}),
}


# ------------------------------------------------------------------------------ inputs


def _unexpected_inputs(module: str, inputs: dict[str, Any]) -> list[str]:
    accepted = _ACCEPTED_INPUTS[module]
    return [f"module {module!r} takes no input {name!r}"
            for name in sorted(inputs) if name not in accepted]


def _party_names(plan: Plan) -> str:
    return ", ".join(p.party for p in plan.parties)


def _is_guid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _principal_ids(inputs: dict[str, Any], parties: list[str], what: str) -> list[str]:
    """The ``principal_ids`` input (party → its identity's principal id) for ``parties``, in
    that order; parties not listed are ignored."""
    given = inputs.get("principal_ids")
    if not isinstance(given, Mapping):
        raise DeploymentInputError(
            [f"principal_ids is required: a mapping of {what} party to its identity's "
             "principal id"]
        )
    problems = []
    principal_ids = []
    for party in parties:
        value = given.get(party)
        if value is None:
            problems.append(f"principal_ids has no principal id for {what} {party!r}")
        elif not _is_guid(value):
            problems.append(f"principal_ids[{party!r}] is not a GUID")
        else:
            principal_ids.append(str(value).lower())
    if problems:
        raise DeploymentInputError(problems)
    return principal_ids


def _guid(inputs: dict[str, Any], name: str, problems: list[str]) -> str:
    value = inputs.get(name)
    if value is None:
        problems.append(f"{name} is required")
    elif not _is_guid(value):
        problems.append(f"{name} must be a GUID (an Entra object id)")
    return str(value).lower() if value is not None else ""


def _ip_ranges(inputs: dict[str, Any], problems: list[str]) -> list[str]:
    value = inputs.get("allowed_ip_ranges")
    if value is None or isinstance(value, str) or not isinstance(value, Sequence):
        problems.append(
            "allowed_ip_ranges is required: the public IPv4 addresses/CIDRs the vault firewall "
            "admits (the control plane's egress); pass [] to admit only the VM subnet"
        )
        return []
    networks = []
    for item in value:
        try:
            network = ipaddress.ip_network(str(item), strict=True)
        except ValueError:
            problems.append(f"allowed_ip_ranges: {item!r} is not an IPv4 address or CIDR")
            continue
        if network.version != 4 or not network.is_global:
            problems.append(f"allowed_ip_ranges: {item!r} is not a public IPv4 range")
            continue
        networks.append(network)
    return _ip_rules(networks)


def _ip_rules(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network], *,
              storage: bool = False) -> list[str]:
    """Firewall ip rule values: a single host as a bare address (Key Vault and storage), and
    for ``storage`` (whose rules take no /31 or /32 range) a /31 as its two addresses."""
    result: list[str] = []
    for network in networks:
        if network.prefixlen == 32 or (storage and network.prefixlen == 31):
            result += [str(address) for address in network]
        else:
            result.append(str(network))
    return result


def _credential(inputs: dict[str, Any], problems: list[str]) -> tuple[str, str]:
    key = inputs.get("ssh_public_key")
    password = inputs.get("admin_password")
    if (key is None) == (password is None):
        problems.append("pass exactly one of ssh_public_key and admin_password")
        return "", ""
    if key is not None:
        if not isinstance(key, str) or not _SSH_KEY.match(key.strip()):
            problems.append("ssh_public_key is not an OpenSSH public key")
            return "", ""
        return "sshPublicKey", key.strip()
    if not isinstance(password, str) or not 12 <= len(password) <= 72:
        problems.append("admin_password must be 12 to 72 characters")
        return "", ""
    classes = sum(bool(re.search(pattern, password)) for pattern in _PASSWORD_CLASSES)
    if classes < 3:
        problems.append("admin_password needs 3 of: lower case, upper case, digit, symbol")
    return "password", password


def _image_reference(urn: str) -> dict[str, str]:
    publisher, offer, sku, version = urn.split(":")
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}
