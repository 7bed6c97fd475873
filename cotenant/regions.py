"""Azure region → shared Microsoft Azure Attestation (MAA) authority.

Every public Azure region that offers a *shared* attestation provider exposes it at
``https://shared<code>.<code>.attest.azure.net``. The table below lists the regions for which
the endpoint is published: Microsoft's Azure guest attestation SDK region table (commercial
cloud) and the default CVM disk-key release policy Azure applies (``samples/policy-default-cvm``)
name exactly these hosts. A region missing here has no known shared authority: a spec for it
must name a dedicated authority, and this is checked before anything is deployed.
"""

from __future__ import annotations

# region name (lowercase, no spaces) -> short code used in the shared provider's host name
_SHARED_CODES: dict[str, str] = {
    "australiacentral": "cau",
    "australiacentral2": "cau2",
    "australiaeast": "eau",
    "australiasoutheast": "sau",
    "austriaeast": "ate",
    "brazilsouth": "sbr",
    "brazilsoutheast": "sebr",
    "canadacentral": "cac",
    "canadaeast": "cae",
    "centralindia": "cin",
    "centralus": "cus",
    "centraluseuap": "cuse",
    "chilecentral": "clc",
    "eastasia": "easia",
    "eastus": "eus",
    "eastus2": "eus2",
    "eastus2euap": "eus2e",
    "francecentral": "frc",
    "francesouth": "frs",
    "germanynorth": "den",
    "germanywestcentral": "dewc",
    "israelcentral": "ilc",
    "italynorth": "itn",
    "japaneast": "jpe",
    "japanwest": "jpw",
    "jioindiacentral": "jinc",
    "jioindiawest": "jinw",
    "koreacentral": "krc",
    "koreasouth": "krs",
    "malaysiasouth": "mys",
    "mexicocentral": "mxc",
    "newzealandnorth": "nzn",
    "northcentralus": "ncus",
    "northeurope": "neu",
    "norwayeast": "noe",
    "norwaywest": "now",
    "polandcentral": "plc",
    "southafricanorth": "san",
    "southafricawest": "saw",
    "southcentralus": "scus",
    "southeastasia": "sasia",
    "southindia": "sin",
    "spaincentral": "esc",
    "swedencentral": "sec",
    "swedensouth": "ses",
    "switzerlandnorth": "swn",
    "switzerlandwest": "sww",
    "taiwannorth": "twn",
    "taiwannorthwest": "twnw",
    "uaecentral": "uaec",
    "uaenorth": "uaen",
    "uksouth": "uks",
    "ukwest": "ukw",
    "westcentralus": "wcus",
    "westeurope": "weu",
    "westindia": "win",
    "westus": "wus",
    "westus2": "wus2",
    "westus3": "wus3",
}

SHARED_AUTHORITIES: dict[str, str] = {
    region: f"https://shared{code}.{code}.attest.azure.net"
    for region, code in _SHARED_CODES.items()
}


def normalize_region(region: str) -> str:
    """``"North Europe"`` → ``"northeurope"`` (Azure's canonical location name)."""
    return "".join(region.split()).lower()


def shared_authority(region: str) -> str | None:
    """The shared attestation authority URL of ``region`` (no trailing slash), or None."""
    return SHARED_AUTHORITIES.get(normalize_region(region))


def known_regions() -> list[str]:
    return sorted(SHARED_AUTHORITIES)
