"""The gateway's TLS facts as one check, shared by the structural and the tampered-copy tests.

``tls_problems(template)`` lists what breaks "clients reach the tenant over TLS only": a
listener that is not HTTPS (unless every rule on it only redirects to an HTTPS listener), an
HTTPS listener without the Key Vault certificate, a certificate uploaded inline instead of read
from Key Vault, an outdated TLS policy, or a gateway without the identity that reads the
certificate.
"""

from __future__ import annotations

from typing import Any

from tests.bicep.template import Template

# TLS 1.2 minimum with AEAD suites (the 2022 predefined policies; "S" is the strict variant).
MODERN_SSL_POLICIES = frozenset({"AppGwSslPolicy20220101S", "AppGwSslPolicy20220101"})


def _last(ref: Any) -> str:
    return str(ref["id"]).rsplit("/", 1)[1]


def _redirects_only_to_https(rules: list[dict], redirects: dict[str, dict],
                             https_listeners: set[str]) -> bool:
    for rule in rules:
        props = rule["properties"]
        if "backendAddressPool" in props or "redirectConfiguration" not in props:
            return False
        redirect = redirects.get(_last(props["redirectConfiguration"]), {})
        target = redirect.get("targetListener")
        if target is None or _last(target) not in https_listeners:
            return False
    return bool(rules)


def tls_problems(template: Template) -> list[str]:
    (gateway,) = template.of_type("Microsoft.Network/applicationGateways")
    props = gateway.properties
    problems: list[str] = []
    certificates = {c["name"]: c["properties"] for c in props.get("sslCertificates") or []}
    expected_secret = template.params["tlsCertificateUri"]
    for name, cert in certificates.items():
        if "data" in cert or "password" in cert:
            problems.append(f"certificate {name} is uploaded inline, not read from Key Vault")
        if cert.get("keyVaultSecretId") != expected_secret:
            problems.append(f"certificate {name} is not the spec's Key Vault secret")
    listeners = props.get("httpListeners") or []
    https = {x["name"] for x in listeners if x["properties"].get("protocol") == "Https"}
    redirects = {r["name"]: r["properties"] for r in props.get("redirectConfigurations") or []}
    for listener in listeners:
        name, lp = listener["name"], listener["properties"]
        if name in https:
            cert = lp.get("sslCertificate")
            if cert is None or _last(cert) not in certificates:
                problems.append(f"{name} serves no Key Vault certificate")
            continue
        rules = [r for r in props.get("requestRoutingRules") or []
                 if _last(r["properties"]["httpListener"]) == name]
        if not _redirects_only_to_https(rules, redirects, https):
            problems.append(f"{name} serves plain {lp.get('protocol')}")
    policy = props.get("sslPolicy") or {}
    if (policy.get("policyType"), policy.get("policyName") in MODERN_SSL_POLICIES) != (
            "Predefined", True):
        problems.append(f"TLS policy {policy} is not a modern predefined policy")
    identity = gateway.body.get("identity") or {}
    if identity.get("type") != "UserAssigned" or list(
            identity.get("userAssignedIdentities") or {}) != [template.params["identityId"]]:
        problems.append("the gateway lacks the identity that reads the certificate")
    return problems
