"""The deployment plan: a pure, deterministic function of the tenant spec.

Everything the orchestrator and the Bicep modules need is decided here: resource names (stable
across re-runs; globally unique names get a hash suffix of the tenant, never random letters),
network and NSG rules, per-party identity/vault/keys/DES/VM, release policies, key-scoped
release grants, gateway listeners, and the phase graph with duration estimates.
"""

from __future__ import annotations

import hashlib
from graphlib import TopologicalSorter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cotenant.matrix import AccessMatrix, build_access_matrix
from cotenant.policy import build_disk_release_policy, build_release_policy
from cotenant.regions import SHARED_AUTHORITIES
from cotenant.spec import TenantSpec

RELEASE_ROLE = "Key Vault Crypto Service Release User"
RELEASE_ROLE_ID = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"
ENCRYPTION_ROLE = "Key Vault Crypto Service Encryption User"
ENCRYPTION_ROLE_ID = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
OFFICER_ROLE = "Key Vault Crypto Officer"
OFFICER_ROLE_ID = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
# The control plane's vault-wide role: a custom role (bicep/control-plane/main.bicep) that manages
# app keys and their policies but can never use them: no release, decrypt, unwrap, sign, import,
# export, backup/restore or purge. Its id is per deployment on Azure (the control plane reads it
# from COTENANT_OPERATOR_ROLE_DEFINITION_ID); the lab uses KEY_OPERATOR_LAB_ROLE_ID.
KEY_OPERATOR_ROLE = "cotenant Key Operator"
KEY_OPERATOR_LAB_ROLE_ID = "6f1c3a52-3e0b-5d7a-9c4e-0b8a2d6e4f13"
KEY_OPERATOR_DATA_ACTIONS: tuple[str, ...] = (
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/create/action",
    "Microsoft.KeyVault/vaults/keys/update/action",
    "Microsoft.KeyVault/vaults/keys/rotate/action",
    "Microsoft.KeyVault/vaults/keys/delete",
    "Microsoft.KeyVault/vaults/keys/recover/action",
    "Microsoft.KeyVault/vaults/keys/encrypt/action",
    "Microsoft.KeyVault/vaults/keys/wrap/action",
    "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
    "Microsoft.KeyVault/vaults/keyrotationpolicies/write",
)
# The platform's "Confidential VM Orchestrator" service principal (releases the disk key).
CVM_ORCHESTRATOR_APP_ID = "bf7b6499-ff71-4aa2-97a4-f372087be7f0"

APP_KEY_TYPE = "RSA-HSM"
APP_KEY_SIZE = 2048
# Only the public-key operations: Key Vault must never decrypt or unwrap with an app key on
# anyone's behalf (the vault's Crypto Officer included), so the private half is only ever used
# inside an attested CVM after a release. Release itself is not a key operation.
APP_KEY_OPS = ["encrypt", "wrapKey"]
DISK_KEY_SIZE = 3072
VM_BACKEND_PORT = 80
HEALTH_PROBE_PATH = "/"
# TLS 1.2+ with only ECDHE AES-GCM suites (the strict variant of the 2022 predefined policy).
GATEWAY_SSL_POLICY = "AppGwSslPolicy20220101S"

# Phase estimates (seconds), from the seed's stated timeline for three parties: shared
# infrastructure ~2 min; vaults, identities, keys, DES ~4 min (80 s a party); CVMs + bootstrap
# ~12 min (240 s a party); gateway ~8 min; Bastion ~5 min (debug only). Not in the seed: each
# party's data storage account (~30 s, beside the critical path).
ESTIMATES: dict[str, float] = {
    "resource-group": 10.0,
    "network": 110.0,
    "party": 60.0,
    "app-key": 10.0,
    "grants": 10.0,
    "data": 30.0,  # the party's storage account, container and container-scoped grants
    "cvm": 150.0,
    "bootstrap": 60.0,
    "attest": 20.0,
    "verify": 10.0,
    "gateway": 480.0,
    "bastion": 300.0,
    "finalize": 0.0,
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class NsgRule(_Frozen):
    priority: int
    name: str
    direction: Literal["Inbound", "Outbound"] = "Inbound"
    access: Literal["Allow", "Deny"]
    protocol: Literal["Tcp", "Udp", "*"]
    source: str
    source_port: str = "*"
    destination: str
    destination_port: str
    debug_only: bool = False


class Subnet(_Frozen):
    name: str
    cidr: str


class NetworkPlan(_Frozen):
    vnet_name: str
    address_space: str
    vm_subnet: Subnet
    gateway_subnet: Subnet
    bastion_subnet: Subnet | None  # debug only
    nsg_name: str
    # outbound for the VM subnet (the VMs have no public IPs)
    nat_gateway_name: str
    nat_public_ip_name: str


class RoleOnKey(_Frozen):
    """A role assignment scoped to one key (``principal`` names who gets it)."""

    principal: Literal["disk-encryption-set", "confidential-vm-orchestrator"]
    principal_app_id: str | None = None
    role: str
    role_definition_id: str


class PartyPlan(_Frozen):
    party: str
    display_name: str
    role: Literal["owner", "aggregator"]
    identity_name: str
    vault_name: str
    vault_uri: str
    app_key_name: str
    app_key_type: str = APP_KEY_TYPE
    app_key_size: int = APP_KEY_SIZE
    app_key_ops: list[str] = APP_KEY_OPS
    disk_key_name: str
    disk_key_size: int = DISK_KEY_SIZE
    disk_key_roles: list[RoleOnKey]
    des_name: str
    vm_name: str
    computer_name: str
    os_disk_name: str
    nic_name: str
    private_ip: str
    gateway_port: int
    releasable_by: list[str]
    can_release: list[str]  # key owners whose key this party's CVM may release
    release_policy: dict
    # The party's own storage for its sealed data (owners publish there; the parties that may
    # release the owner's key get read access to the container).
    storage_account_name: str
    storage_account_url: str
    data_container: str
    data_blob: str
    # Entra object ids that may publish the sealed file (Storage Blob Data Contributor on the
    # container); the spec's ``data_uploaders``.
    data_uploaders: list[str] = []
    # public IPv4 ranges the storage firewall admits besides the VM subnet (the spec's
    # ``data_allowed_ip_ranges``)
    data_allowed_ip_ranges: list[str] = []


class KeyGrant(_Frozen):
    key_owner: str
    vault_name: str
    key_name: str
    grantee: str
    grantee_identity: str
    role: str = RELEASE_ROLE
    role_definition_id: str = RELEASE_ROLE_ID


class Listener(_Frozen):
    party: str
    name: str
    frontend_port: int
    # clients reach the gateway over TLS only; the gateway reaches the VM inside the VNet
    frontend_protocol: Literal["Https"] = "Https"
    backend_pool: str
    backend_ip: str
    backend_port: int = VM_BACKEND_PORT
    protocol: Literal["Http"] = "Http"  # gateway -> VM (backend settings)
    probe_path: str = HEALTH_PROBE_PATH
    rule_priority: int


class GatewayPlan(_Frozen):
    name: str
    public_ip_name: str
    dns_label: str
    waf_policy_name: str
    sku: str = "WAF_v2"
    waf_rule_set: str = "OWASP"
    waf_rule_set_version: str = "3.2"
    waf_mode: Literal["Prevention", "Detection"] = "Prevention"
    ssl_policy: str = GATEWAY_SSL_POLICY
    # versionless Key Vault secret URL of the certificate every listener serves, and the
    # user-assigned identity (holding Key Vault Secrets User on it) the gateway reads it with
    tls_certificate_secret_id: str
    identity_id: str
    listeners: list[Listener]


class BastionPlan(_Frozen):
    name: str
    public_ip_name: str
    sku: str = "Basic"


class Phase(_Frozen):
    name: str
    depends_on: list[str]
    estimate_seconds: float
    party: str | None = None
    kind: Literal["deployment", "activity", "wait"] = "deployment"
    module: str | None = None  # the Bicep module a deployment phase deploys


class Plan(_Frozen):
    tenant: str
    location: str
    resource_group: str
    vm_size: str
    image: str
    debug: bool
    authority: str
    key_rotation_days: int
    # every party's disk-encryption key carries this policy (Azure's default CVM policy shape)
    disk_key_release_policy: dict
    parties: list[PartyPlan]
    network: NetworkPlan
    nsg_rules: list[NsgRule]
    gateway: GatewayPlan
    bastion: BastionPlan | None
    grants: list[KeyGrant]
    phases: list[Phase]
    critical_path: list[str]
    critical_path_seconds: float
    sequential_seconds: float
    access_matrix: AccessMatrix

    def party(self, name: str) -> PartyPlan:
        for party in self.parties:
            if party.party == name:
                return party
        raise KeyError(name)

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    def grants_for_key(self, key_owner: str) -> list[KeyGrant]:
        return [g for g in self.grants if g.key_owner == key_owner]

    def outline(self) -> dict[str, Any]:
        """What ``deploy_tenant`` schedules from (JSON): the phase graph, each party's names
        and whom it may release, the totals. It lives in the orchestration's history and is
        replayed every episode, so it leaves out the rest (release policies, network, NSG
        rules: ~100 KB at ten parties); activities rebuild the full plan from the spec."""
        return self.model_dump(mode="json", include={
            "tenant": True, "resource_group": True, "debug": True,
            "critical_path_seconds": True, "sequential_seconds": True,
            "phases": {"__all__": {"name", "depends_on", "module", "estimate_seconds"}},
            "parties": {"__all__": {"party", "vm_name", "app_key_name", "can_release"}}})


# ------------------------------------------------------------------------------ names


def name_hash(*parts: str, length: int = 6) -> str:
    """A stable, lowercase hex suffix of ``parts`` (no randomness: re-runs are idempotent)."""
    return hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:length]


def vault_name(spec: TenantSpec, party: str) -> str:
    """Key Vault names are global: 3-24 chars, letters/digits/hyphens, start with a letter,
    end with a letter or digit, no ``--``. ``kv-<tenant>-<party>`` cut to 17 + ``-<hash6>``."""
    stem = f"kv-{spec.name}-{party}"[:17].rstrip("-")
    return f"{stem}-{name_hash(spec.naming_seed, spec.name, party)}"


def storage_account_name(spec: TenantSpec, party: str) -> str:
    """Storage account names are global: 3-24 lowercase letters and digits only.
    ``st<tenant><party>`` (letters/digits only) cut to 16 + ``<hash8>``."""
    stem = "".join(c for c in f"st{spec.name}{party}".lower() if c.isalnum())[:16]
    return f"{stem}{name_hash(spec.naming_seed, spec.name, party, 'storage', length=8)}"


def dns_label(spec: TenantSpec) -> str:
    return f"{spec.name}-{name_hash(spec.naming_seed, spec.name, 'gateway', length=8)}"


# ------------------------------------------------------------------------------ pieces


def _nsg_rules(spec: TenantSpec) -> list[NsgRule]:
    net = spec.network
    vm = str(net.vm_subnet)
    rules = [
        NsgRule(priority=100, name="Allow-AppGw-HTTP", access="Allow", protocol="Tcp",
                source=str(net.gateway_subnet), destination=vm,
                destination_port=str(VM_BACKEND_PORT)),
        NsgRule(priority=110, name="Allow-InterVM-HTTPS", access="Allow", protocol="Tcp",
                source=vm, destination=vm, destination_port="443"),
    ]
    if spec.debug:
        rules.append(
            NsgRule(priority=120, name="Allow-Bastion-SSH", access="Allow", protocol="Tcp",
                    source=str(net.bastion_subnet), destination=vm, destination_port="22",
                    debug_only=True)
        )
    rules.append(
        NsgRule(priority=4000, name="Deny-All-Other-Inbound", access="Deny", protocol="*",
                source="VirtualNetwork", destination="VirtualNetwork", destination_port="*")
    )
    return rules


def _network(spec: TenantSpec) -> NetworkPlan:
    net = spec.network
    return NetworkPlan(
        vnet_name=f"vnet-{spec.name}",
        address_space=str(net.vnet_cidr),
        vm_subnet=Subnet(name="VMSubnet", cidr=str(net.vm_subnet)),
        gateway_subnet=Subnet(name="AppGwSubnet", cidr=str(net.gateway_subnet)),
        bastion_subnet=(
            Subnet(name="AzureBastionSubnet", cidr=str(net.bastion_subnet)) if spec.debug else None
        ),
        nsg_name=f"nsg-{spec.name}-vm",
        nat_gateway_name=f"ng-{spec.name}",
        nat_public_ip_name=f"pip-{spec.name}-nat",
    )


def _gateway(spec: TenantSpec) -> GatewayPlan:
    return GatewayPlan(
        name=f"agw-{spec.name}",
        public_ip_name=f"pip-{spec.name}-agw",
        dns_label=dns_label(spec),
        waf_policy_name=f"waf-{spec.name}",
        tls_certificate_secret_id=spec.gateway.tls_certificate_secret_id,
        identity_id=spec.gateway.identity_id,
        listeners=[
            Listener(
                party=p.name,
                name=f"listener-{p.name}",
                frontend_port=p.gateway_port,
                backend_pool=f"pool-{p.name}",
                backend_ip=str(p.private_ip),
                rule_priority=100 + 10 * index,
            )
            for index, p in enumerate(spec.parties)
        ],
    )


def _grants(spec: TenantSpec) -> list[KeyGrant]:
    return [
        KeyGrant(
            key_owner=owner.name,
            vault_name=vault_name(spec, owner.name),
            key_name=f"{owner.name}-secret-key",
            grantee=grantee,
            grantee_identity=f"id-{spec.name}-{grantee}",
        )
        for owner in spec.parties
        for grantee in owner.releasable_by
    ]


def _disk_key_roles() -> list[RoleOnKey]:
    return [
        RoleOnKey(principal="disk-encryption-set", role=ENCRYPTION_ROLE,
                  role_definition_id=ENCRYPTION_ROLE_ID),
        RoleOnKey(principal="confidential-vm-orchestrator",
                  principal_app_id=CVM_ORCHESTRATOR_APP_ID, role=RELEASE_ROLE,
                  role_definition_id=RELEASE_ROLE_ID),
    ]


def _party_plans(spec: TenantSpec, release_policy: dict) -> list[PartyPlan]:
    plans = []
    for p in spec.parties:
        vault = vault_name(spec, p.name)
        plans.append(
            PartyPlan(
                party=p.name,
                display_name=p.display_name,
                role=p.role,
                identity_name=f"id-{spec.name}-{p.name}",
                vault_name=vault,
                vault_uri=f"https://{vault}.vault.azure.net",
                app_key_name=f"{p.name}-secret-key",
                disk_key_name=f"{p.name}-disk-key",
                disk_key_roles=_disk_key_roles(),
                des_name=f"des-{spec.name}-{p.name}",
                vm_name=f"vm-{spec.name}-{p.name}",
                computer_name=f"{spec.name}-{p.name}",
                os_disk_name=f"osdisk-{spec.name}-{p.name}",
                nic_name=f"nic-{spec.name}-{p.name}",
                private_ip=str(p.private_ip),
                gateway_port=p.gateway_port,
                releasable_by=list(p.releasable_by),
                can_release=[o.name for o in spec.parties if p.name in o.releasable_by],
                release_policy=release_policy,
                storage_account_name=(account := storage_account_name(spec, p.name)),
                storage_account_url=f"https://{account}.blob.core.windows.net",
                data_container=f"{p.name}-data",
                data_blob=f"{p.name}-data.csv.sealed",
                data_uploaders=list(p.data_uploaders),
                data_allowed_ip_ranges=[str(r) for r in p.data_allowed_ip_ranges],
            )
        )
    return plans


# ------------------------------------------------------------------------------ phases


def _phases(spec: TenantSpec) -> list[Phase]:
    est = ESTIMATES
    phases = [
        Phase(name="resource-group", depends_on=[], estimate_seconds=est["resource-group"],
              kind="activity"),
        Phase(name="network", depends_on=["resource-group"], estimate_seconds=est["network"],
              module="network"),
    ]
    for p in spec.parties:
        n = p.name
        may_release = [o.name for o in spec.parties if n in o.releasable_by]
        phases += [
            Phase(name=f"party:{n}", depends_on=["resource-group"],
                  estimate_seconds=est["party"], party=n, module="party"),
            Phase(name=f"app-key:{n}", depends_on=[f"party:{n}"],
                  estimate_seconds=est["app-key"], party=n, kind="activity"),
            Phase(name=f"grants:{n}",
                  depends_on=[f"app-key:{n}", *(f"party:{g}" for g in p.releasable_by if g != n)],
                  estimate_seconds=est["grants"], party=n, module="grants"),
            # the party's own storage: its VNet rule needs the network phase's service
            # endpoint, its container grants the identities of the parties that may release
            # its key
            Phase(name=f"data:{n}",
                  depends_on=["network", *(f"party:{g}" for g in p.releasable_by if g != n)],
                  estimate_seconds=est["data"], party=n, module="data"),
            Phase(name=f"cvm:{n}", depends_on=["network", f"party:{n}"],
                  estimate_seconds=est["cvm"], party=n, module="cvm"),
            # the agent releases the keys it may (their grants in place) and probes every
            # other key of the tenant, which must exist for its vault to refuse it (403, not
            # 404)
            Phase(name=f"bootstrap:{n}",
                  depends_on=[f"cvm:{n}", *(f"grants:{o}" for o in may_release),
                              *(f"app-key:{o.name}" for o in spec.parties
                                if o.name not in may_release)],
                  estimate_seconds=est["bootstrap"], party=n, kind="activity"),
            Phase(name=f"attest:{n}", depends_on=[f"bootstrap:{n}"],
                  estimate_seconds=est["attest"], party=n, kind="wait"),
            Phase(name=f"verify:{n}", depends_on=[f"attest:{n}"],
                  estimate_seconds=est["verify"], party=n, kind="activity"),
        ]
    phases.append(Phase(name="gateway", depends_on=["network"], estimate_seconds=est["gateway"],
                        module="gateway"))
    final_deps = [*(f"verify:{p.name}" for p in spec.parties),
                  *(f"data:{p.name}" for p in spec.parties), "gateway"]
    if spec.debug:
        phases.append(Phase(name="bastion", depends_on=["network"],
                            estimate_seconds=est["bastion"], module="bastion"))
        final_deps.append("bastion")
    phases.append(Phase(name="finalize", depends_on=final_deps,
                        estimate_seconds=est["finalize"], kind="activity"))
    return phases


def critical_path(phases: list[Phase]) -> tuple[list[str], float]:
    """The longest chain of the phase graph (names) and its length in seconds."""
    by_name = {p.name: p for p in phases}
    order = TopologicalSorter({p.name: p.depends_on for p in phases}).static_order()
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in order:
        best = max(by_name[name].depends_on, key=lambda d: finish[d], default=None)
        via[name] = best
        finish[name] = (finish[best] if best else 0.0) + by_name[name].estimate_seconds
    last = max(finish, key=lambda name: finish[name])
    chain = []
    node: str | None = last
    while node is not None:
        chain.append(node)
        node = via[node]
    return chain[::-1], finish[last]


# ------------------------------------------------------------------------------ plan


def build_plan(spec: TenantSpec) -> Plan:
    """Spec → plan. Pure and deterministic: the same spec always gives the same plan."""
    release_policy = build_release_policy(spec.authority, spec.extra_release_claims)
    parties = _party_plans(spec, release_policy)
    grants = _grants(spec)
    phases = _phases(spec)
    chain, length = critical_path(phases)
    matrix = build_access_matrix(
        parties=[p.party for p in parties],
        key_names={p.party: p.app_key_name for p in parties},
        grants={(g.key_owner, g.grantee) for g in grants},
        policies={p.party: p.release_policy for p in parties},
        authority=spec.authority,
    )
    return Plan(
        tenant=spec.name,
        location=spec.location,
        resource_group=f"rg-{spec.name}",
        vm_size=spec.vm_size,
        image=spec.image.urn,
        debug=spec.debug,
        authority=spec.authority,
        key_rotation_days=spec.key_rotation_days,
        disk_key_release_policy=build_disk_release_policy(
            dict.fromkeys([spec.authority, *sorted(SHARED_AUTHORITIES.values())])
        ),
        parties=parties,
        network=_network(spec),
        nsg_rules=_nsg_rules(spec),
        gateway=_gateway(spec),
        bastion=(
            BastionPlan(name=f"bas-{spec.name}", public_ip_name=f"pip-{spec.name}-bastion")
            if spec.debug else None
        ),
        grants=grants,
        phases=phases,
        critical_path=chain,
        critical_path_seconds=length,
        sequential_seconds=sum(p.estimate_seconds for p in phases),
        access_matrix=matrix,
    )
