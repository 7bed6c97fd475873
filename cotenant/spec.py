"""The tenant spec: one YAML or JSON file describing a multi-party confidential tenant.

``parse_spec`` / ``load_spec`` validate the whole document and report **every** problem at
once, each with its path (``parties[1].private_ip``), by raising :class:`SpecError`. Shape
errors come from pydantic; cross-field rules (addressing, grants, ports, region, VM size) are
checked on whatever parts of the document did parse, so one bad field never hides another.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cotenant.policy import condition_problems, normalize_authority
from cotenant.problems import Problem, join_problems
from cotenant.regions import normalize_region, shared_authority

TENANT_NAME_PATTERN = r"^[a-z][a-z0-9]{2,7}$"
PARTY_NAME_PATTERN = r"^[a-z][a-z0-9]{1,11}$"

# Application Gateway v2 reserves 65200-65535 for its own infrastructure.
MAX_GATEWAY_PORT = 64999

# AMD SEV-SNP confidential VM families (the release policy requires `sevsnpvm`):
# DCasv5/DCadsv5, ECasv5/ECadsv5, their `_cc` variants, and the v6 generation.
_CVM_SIZE = re.compile(
    r"^Standard_(?:"
    r"DC(?:2|4|8|16|32|48|64|96)a(?:d)?s_v5"
    r"|EC(?:2|4|8|16|20|32|48|64|96)a(?:d)?s_v5"
    r"|DC(?:4|8|16|32|48|64|96)a(?:d)?s_cc_v5"
    r"|EC(?:4|8|16|20|32|48|64|96)a(?:d)?s_cc_v5"
    r"|DC(?:2|4|8|16|32|48|64|96)a(?:d)?s_v6"
    r"|EC(?:2|4|8|16|32|48|64|96)a(?:d)?s_v6"
    r")$"
)

DEFAULT_VM_SIZE = "Standard_DC2as_v5"


def is_cvm_size(vm_size: str) -> bool:
    """True when ``vm_size`` is an AMD SEV-SNP Confidential VM size."""
    return bool(_CVM_SIZE.match(vm_size))


class SpecError(ValueError):
    """The spec is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(join_problems(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Model):
    vnet_cidr: IPv4Network = IPv4Network("10.0.0.0/16")
    vm_subnet: IPv4Network = IPv4Network("10.0.1.0/24")
    gateway_subnet: IPv4Network = IPv4Network("10.0.2.0/24")
    bastion_subnet: IPv4Network = IPv4Network("10.0.99.0/26")

    @field_validator("*", mode="before")
    @classmethod
    def _no_host_bits(cls, value: Any) -> Any:
        return no_host_bits(value)


def no_host_bits(value: Any) -> Any:
    """Refuse a CIDR string with host bits set, naming the network it probably meant."""
    if isinstance(value, str):
        try:
            IPv4Network(value)
        except ValueError as exc:
            if "host bits set" in str(exc):
                network = IPv4Network(value, strict=False)
                message = f"{value} has host bits set (did you mean {network}?)"
                raise ValueError(message) from None
    return value


class ImageSpec(_Model):
    publisher: str = "Canonical"
    offer: str = "ubuntu-24_04-lts"
    sku: str = "cvm"
    version: str = "latest"

    @property
    def urn(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}:{self.version}"


class AttestationSpec(_Model):
    """``authority``: the attestation authority every key's release policy trusts.

    Left out, it is the region's shared authority (filled in by :func:`parse_spec`).
    """

    authority: Annotated[str, Field(pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]+)?/?$")] | None = None


# A versionless Key Vault secret URL: the gateway then follows the certificate's renewals.
_SECRET_ID = re.compile(
    r"^https://[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]"
    r"\.vault\.(?:azure\.net|azure\.cn|usgovcloudapi\.net)"
    r"/secrets/[A-Za-z0-9-]{1,127}/?$"
)
_USER_ASSIGNED_IDENTITY_ID = re.compile(
    r"^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"/resourceGroups/[-\w.()]{1,90}"
    r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[A-Za-z0-9][-\w]{2,127}$",
    re.IGNORECASE,
)


class GatewaySpec(_Model):
    """The TLS certificate the Application Gateway serves on every party port.

    ``tls_certificate_secret_id``: the versionless secret URL of a Key Vault certificate
    (``https://<vault>.vault.azure.net/secrets/<name>``). ``identity_id``: the resource id of the
    user-assigned identity the gateway reads it with; whoever owns the vault grants that identity
    Key Vault Secrets User on the certificate's secret before the tenant is deployed (the control
    plane holds no rights on the certificate's vault).
    """

    tls_certificate_secret_id: str
    identity_id: str

    @field_validator("tls_certificate_secret_id")
    @classmethod
    def _secret_id(cls, value: str) -> str:
        if _SECRET_ID.match(value):
            return value.rstrip("/")
        if re.match(r"^https://[^/]+/secrets/[^/]+/[0-9a-fA-F]{32}/?$", value):
            raise ValueError("use the versionless secret id (drop the version) so the gateway "
                             "picks up renewed certificates")
        raise ValueError("must be a Key Vault secret URL "
                         "https://<vault>.vault.azure.net/secrets/<name>")

    @field_validator("identity_id")
    @classmethod
    def _identity_id(cls, value: str) -> str:
        if not _USER_ASSIGNED_IDENTITY_ID.match(value):
            raise ValueError("must be a user-assigned identity resource id /subscriptions/<id>/"
                             "resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/"
                             "userAssignedIdentities/<name>")
        return value


_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class Party(_Model):
    name: Annotated[str, Field(pattern=PARTY_NAME_PATTERN)]
    display_name: Annotated[str, Field(min_length=1, max_length=64)]
    private_ip: IPv4Address
    gateway_port: Annotated[int, Field(ge=1, le=MAX_GATEWAY_PORT)]
    role: Literal["owner", "aggregator"] = "owner"
    releasable_by: list[str] = Field(
        default_factory=list,
        description="Parties whose CVM may release this party's key (default: the party itself).",
    )
    data_uploaders: list[str] = Field(
        default_factory=list,
        description="Entra object ids of the service principals (the party's publishing "
        "pipelines or managed identities) that may write its sealed data file to its own "
        "storage container.",
        json_schema_extra={"items": {"type": "string", "pattern": _OBJECT_ID.pattern},
                           "uniqueItems": True},
    )

    data_allowed_ip_ranges: list[IPv4Network] = Field(
        default_factory=list,
        description="Public IPv4 addresses or CIDR ranges the party's data storage admits "
        "besides the tenant's VM subnet: where its uploaders publish from (default: none).",
    )

    @field_validator("data_allowed_ip_ranges", mode="before")
    @classmethod
    def _ranges_without_host_bits(cls, value: Any) -> Any:
        return [no_host_bits(item) for item in value] if isinstance(value, list) else value

    @field_validator("data_allowed_ip_ranges")
    @classmethod
    def _public_ranges(cls, value: list[IPv4Network]) -> list[IPv4Network]:
        private = [str(network) for network in value if not network.is_global]
        if private:
            raise ValueError(f"{', '.join(private)}: not a public IPv4 range (the storage "
                             "firewall admits the VM subnet by its service endpoint)")
        return value

    @field_validator("data_uploaders")
    @classmethod
    def _uploaders_are_object_ids(cls, value: list[str]) -> list[str]:
        bad = [item for item in value if not _OBJECT_ID.match(item)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not an Entra object id (a GUID "
                             "like 3f2504e0-4f89-41d3-9a0c-0305e82c3301)")
        lowered = [item.lower() for item in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("an object id is listed twice")
        return lowered

    @model_validator(mode="before")
    @classmethod
    def _default_releasable_by(cls, data: Any) -> Any:
        if isinstance(data, dict) and "releasable_by" not in data and "name" in data:
            return {**data, "releasable_by": [data["name"]]}
        return data


class TenantSpec(_Model):
    name: Annotated[str, Field(pattern=TENANT_NAME_PATTERN)]
    location: str = "northeurope"
    vm_size: str = DEFAULT_VM_SIZE
    debug: bool = False
    image: ImageSpec = ImageSpec()
    network: NetworkSpec = NetworkSpec()
    parties: Annotated[list[Party], Field(min_length=1, max_length=50)]
    attestation: AttestationSpec = AttestationSpec()
    gateway: GatewaySpec = Field(
        description="The TLS certificate (Key Vault) the gateway serves on every party port: "
        "required, there is no plain-HTTP listener.",
    )
    extra_release_claims: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra release-policy conditions every key requires, e.g. "
        "{claim: x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable, equals: false}.",
    )
    key_rotation_days: Annotated[int, Field(ge=7, le=3650)] = 90
    naming_seed: Annotated[str, Field(max_length=64)] = Field(
        default="",
        description="Mixed into the hash suffix of globally unique names (Key Vault, DNS label) "
        "when two tenants share a name.",
    )

    @property
    def authority(self) -> str:
        """The attestation authority: the dedicated one, else the region's shared one."""
        authority = self.attestation.authority or shared_authority(self.location)
        if authority is None:
            raise ValueError(f"region {self.location!r} has no known shared attestation authority")
        return authority

    def party(self, name: str) -> Party:
        for party in self.parties:
            if party.name == name:
                return party
        raise KeyError(name)


# ---------------------------------------------------------------- loading and validation


def load_spec(path: str | Path) -> TenantSpec:
    """Read a YAML or JSON spec file and validate it (raises :class:`SpecError`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem("", f"cannot read {path}: {exc.strerror or exc}")]) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        problem = Problem("", f"{path.name} is not valid YAML/JSON: {first_line}")
        raise SpecError([problem]) from None
    return parse_spec(data)


def parse_spec(data: dict) -> TenantSpec:
    """Validate a spec document (a mapping) and return the spec with derived defaults set."""
    if not isinstance(data, dict):
        raise SpecError([Problem("", "the spec must be a mapping (YAML/JSON object)")])
    problems: list[Problem] = []
    spec: TenantSpec | None = None
    try:
        spec = TenantSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(_from_validation_error(exc))
    parts = _Parts.of(spec) if spec is not None else _Parts.salvage(data)
    problems.extend(_semantic_problems(parts))
    if problems:
        raise SpecError(_dedupe(problems))
    assert spec is not None
    authority = normalize_authority(spec.attestation.authority or spec.authority)
    return spec.model_copy(update={
        "attestation": AttestationSpec(authority=authority),
        "location": normalize_region(spec.location),
    })


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec document."""
    schema = TenantSpec.model_json_schema()
    schema["title"] = "cotenant tenant spec"
    return schema


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _from_validation_error(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch":
            message = f"{err['input']!r} does not match {err['ctx']['pattern']}"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "value_error":
            message = str(err["ctx"]["error"])
        problems.append(Problem(_format_loc(loc), message))
    return problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


@dataclass
class _Parts:
    """The pieces of a spec the cross-field rules need; None when that piece failed to parse."""

    location: str | None
    vm_size: str | None
    authority: str | None
    network: NetworkSpec | None
    parties: list[tuple[int, Party]]
    raw_party_names: list[tuple[int, str]]
    extra_release_claims: list[Any]

    @classmethod
    def of(cls, spec: TenantSpec) -> _Parts:
        return cls(
            location=spec.location,
            vm_size=spec.vm_size,
            authority=spec.attestation.authority,
            network=spec.network,
            parties=list(enumerate(spec.parties)),
            raw_party_names=[(i, p.name) for i, p in enumerate(spec.parties)],
            extra_release_claims=list(spec.extra_release_claims),
        )

    @classmethod
    def salvage(cls, data: dict) -> _Parts:
        raw_parties = data.get("parties")
        raw_parties = raw_parties if isinstance(raw_parties, list) else []
        parties = []
        for index, raw in enumerate(raw_parties):
            try:
                parties.append((index, Party.model_validate(raw)))
            except ValidationError:
                continue
        attestation = data.get("attestation")
        authority = attestation.get("authority") if isinstance(attestation, dict) else None
        claims = data.get("extra_release_claims")
        return cls(
            location=_str_or_none(data.get("location", "northeurope")),
            vm_size=_str_or_none(data.get("vm_size", DEFAULT_VM_SIZE)),
            authority=_str_or_none(authority),
            network=_salvage_network(data.get("network", {})),
            parties=parties,
            raw_party_names=[
                (i, raw["name"])
                for i, raw in enumerate(raw_parties)
                if isinstance(raw, dict) and isinstance(raw.get("name"), str)
            ],
            extra_release_claims=claims if isinstance(claims, list) else [],
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _salvage_network(raw: Any) -> NetworkSpec | None:
    try:
        return NetworkSpec.model_validate(raw)
    except ValidationError:
        return None


# ---------------------------------------------------------------- cross-field rules


def _semantic_problems(parts: _Parts) -> list[Problem]:
    problems: list[Problem] = []
    problems += _check_region(parts)
    problems += _check_vm_size(parts)
    problems += _check_party_names(parts)
    if parts.network is not None:
        problems += _check_network(parts.network)
        problems += _check_ips(parts.network, parts.parties)
    problems += _check_ports(parts.parties)
    problems += _check_grants(parts.parties, {n for _, n in parts.raw_party_names})
    problems += _check_aggregators(parts.parties, len(parts.raw_party_names))
    problems += _check_extra_claims(parts.extra_release_claims)
    return problems


def _check_region(parts: _Parts) -> list[Problem]:
    if parts.location is None or parts.authority is not None:
        return []
    if shared_authority(parts.location) is None:
        return [
            Problem(
                "location",
                f"region {parts.location!r} has no known shared attestation authority; "
                "choose another region or set attestation.authority to a dedicated provider",
            )
        ]
    return []


def _check_vm_size(parts: _Parts) -> list[Problem]:
    if parts.vm_size is None or is_cvm_size(parts.vm_size):
        return []
    return [
        Problem(
            "vm_size",
            f"{parts.vm_size!r} is not an AMD SEV-SNP Confidential VM size "
            "(DCasv5/DCadsv5/ECasv5/ECadsv5 families, e.g. Standard_DC2as_v5)",
        )
    ]


def _check_party_names(parts: _Parts) -> list[Problem]:
    counts = Counter(name for _, name in parts.raw_party_names)
    return [
        Problem(f"parties[{index}].name", f"duplicate party name {name!r}")
        for index, name in parts.raw_party_names
        if counts[name] > 1
    ]


def _check_network(net: NetworkSpec) -> list[Problem]:
    problems = []
    subnets = {
        "network.vm_subnet": net.vm_subnet,
        "network.gateway_subnet": net.gateway_subnet,
        "network.bastion_subnet": net.bastion_subnet,
    }
    for path, subnet in subnets.items():
        if not subnet.subnet_of(net.vnet_cidr):
            problems.append(Problem(path, f"{subnet} is not inside the VNet {net.vnet_cidr}"))
    items = list(subnets.items())
    for i, (path_a, a) in enumerate(items):
        for path_b, b in items[i + 1 :]:
            if a.overlaps(b):
                problems.append(Problem(path_b, f"{b} overlaps {path_a} ({a})"))
    if net.bastion_subnet.prefixlen > 26:
        problems.append(
            Problem("network.bastion_subnet", "AzureBastionSubnet must be /26 or larger")
        )
    for path, subnet in subnets.items():
        if subnet.prefixlen > 29:
            problems.append(Problem(path, f"{subnet} is too small for an Azure subnet (max /29)"))
    return problems


def reserved_addresses(subnet: IPv4Network) -> set[IPv4Address]:
    """Azure reserves the first four and the last address of every subnet."""
    first = int(subnet.network_address)
    return {IPv4Address(first + i) for i in range(4)} | {subnet.broadcast_address}


def _check_ips(net: NetworkSpec, parties: list[tuple[int, Party]]) -> list[Problem]:
    problems = []
    reserved = reserved_addresses(net.vm_subnet)
    seen: dict[IPv4Address, str] = {}
    for index, party in parties:
        path = f"parties[{index}].private_ip"
        ip = party.private_ip
        if ip not in net.vm_subnet:
            problems.append(Problem(path, f"{ip} is outside the VM subnet {net.vm_subnet}"))
        elif ip in reserved:
            problems.append(
                Problem(path, f"{ip} is reserved by Azure (first four and last of {net.vm_subnet})")
            )
        if ip in seen:
            problems.append(Problem(path, f"{ip} is already used by party {seen[ip]!r}"))
        else:
            seen[ip] = party.name
    return problems


def _check_ports(parties: list[tuple[int, Party]]) -> list[Problem]:
    problems = []
    seen: dict[int, str] = {}
    for index, party in parties:
        port = party.gateway_port
        if port in seen:
            problems.append(
                Problem(
                    f"parties[{index}].gateway_port",
                    f"port {port} is already the gateway listener of party {seen[port]!r}",
                )
            )
        else:
            seen[port] = party.name
    return problems


def _check_grants(parties: list[tuple[int, Party]], known: set[str]) -> list[Problem]:
    problems = []
    roles = {party.name: party.role for _, party in parties}
    for index, party in parties:
        path = f"parties[{index}].releasable_by"
        if not party.releasable_by:
            problems.append(Problem(path, "no party may release this key"))
        for j, grantee in enumerate(party.releasable_by):
            if grantee not in known:
                problems.append(Problem(f"{path}[{j}]", f"unknown party {grantee!r}"))
            elif grantee != party.name and roles.get(grantee, "aggregator") != "aggregator":
                problems.append(
                    Problem(
                        f"{path}[{j}]",
                        f"{grantee!r} is a data owner; only aggregators may release "
                        "another party's key",
                    )
                )
        for grantee, count in Counter(party.releasable_by).items():
            if count > 1:
                problems.append(Problem(path, f"{grantee!r} is listed {count} times"))
    return problems


def _check_aggregators(parties: list[tuple[int, Party]], party_count: int) -> list[Problem]:
    """A multi-party tenant needs an aggregator, and an aggregator needs something to read.

    Checked only when every party parsed (otherwise the answer is not known yet)."""
    if party_count < 2 or len(parties) != party_count:
        return []
    aggregators = [(index, p) for index, p in parties if p.role == "aggregator"]
    if not aggregators:
        return [Problem("parties", "a multi-party tenant needs at least one party with role "
                        "aggregator allowed to release the owners' keys")]
    return [
        Problem(f"parties[{index}].role", f"aggregator {aggregator.name!r} may release no "
                "other party's key (add it to their releasable_by)")
        for index, aggregator in aggregators
        if not any(aggregator.name in p.releasable_by for _, p in parties if p is not aggregator)
    ]


def _check_extra_claims(claims: list[Any]) -> list[Problem]:
    problems = []
    for index, claim in enumerate(claims):
        problems.extend(condition_problems(claim, f"extra_release_claims[{index}]"))
    return problems

