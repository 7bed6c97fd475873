"""Key Vault data-plane authorization: RBAC role assignments and legacy access policies.

A vault with ``rbac`` on honours only role assignments at vault scope
(``https://<vault>.vault.azure.net``), key scope (``…/keys/<name>``) or, inherited like in
Azure, the scope of the vault's resource group (``/subscriptions/<id>/resourcegroups/<rg>``);
a vault with ``rbac`` off honours only its access policies (key permissions). Anything not
granted is 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotenant.lab.state import LabState, Vault
from cotenant.plan import KEY_OPERATOR_DATA_ACTIONS, KEY_OPERATOR_LAB_ROLE_ID, KEY_OPERATOR_ROLE

_KEYS = "Microsoft.KeyVault/vaults/keys"
_ROTATION = "Microsoft.KeyVault/vaults/keyrotationpolicies"

# operation -> (RBAC data action, access-policy key permission)
OPERATIONS: dict[str, tuple[str, str]] = {
    "get": (f"{_KEYS}/read", "get"),
    "list": (f"{_KEYS}/read", "list"),
    "create": (f"{_KEYS}/create/action", "create"),
    "update": (f"{_KEYS}/update/action", "update"),
    "delete": (f"{_KEYS}/delete", "delete"),
    "recover": (f"{_KEYS}/recover/action", "recover"),
    "purge": (f"{_KEYS}/purge/action", "purge"),
    "encrypt": (f"{_KEYS}/encrypt/action", "encrypt"),
    "decrypt": (f"{_KEYS}/decrypt/action", "decrypt"),
    "wrapKey": (f"{_KEYS}/wrap/action", "wrapKey"),
    "unwrapKey": (f"{_KEYS}/unwrap/action", "unwrapKey"),
    "release": (f"{_KEYS}/release/action", "release"),
    "rotate": (f"{_KEYS}/rotate/action", "rotate"),
    "getrotationpolicy": (f"{_ROTATION}/read", "getrotationpolicy"),
    "setrotationpolicy": (f"{_ROTATION}/write", "setrotationpolicy"),
}

# The roles the lab knows: name -> (role definition id, data actions; "*" suffix wildcards).
# All built-in but the control plane's custom key operator role (exactly its Azure data actions).
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    KEY_OPERATOR_ROLE: (KEY_OPERATOR_LAB_ROLE_ID, KEY_OPERATOR_DATA_ACTIONS),
    "Key Vault Crypto Officer": ("14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
                                 (f"{_KEYS}/*", f"{_ROTATION}/*")),
    "Key Vault Crypto User": ("12338af0-0e69-4776-bea7-57ae8d297424", (
        f"{_KEYS}/read", f"{_KEYS}/update/action", f"{_KEYS}/backup/action",
        f"{_KEYS}/encrypt/action", f"{_KEYS}/decrypt/action", f"{_KEYS}/wrap/action",
        f"{_KEYS}/unwrap/action", f"{_KEYS}/sign/action", f"{_KEYS}/verify/action")),
    "Key Vault Crypto Service Release User": ("08bbd89e-9f13-488c-ac41-acfcb10c90ab",
                                              (f"{_KEYS}/release/action",)),
    "Key Vault Crypto Service Encryption User": ("e147488a-f6f5-4113-8e2d-b22465e65bf6", (
        f"{_KEYS}/read", f"{_KEYS}/wrap/action", f"{_KEYS}/unwrap/action")),
}
ACCESS_POLICY_PERMISSIONS = frozenset(p for _, p in OPERATIONS.values()) | {"all"}


def group_scope(subscription_id: str, resource_group: str) -> str:
    """A resource group's role-assignment scope, normalised (ARM ids are case-insensitive)."""
    return f"/subscriptions/{subscription_id}/resourcegroups/{resource_group}".lower()


def role_name(role: str) -> str:
    """Canonical role name from a name or role definition id (or ARM id ending in one)."""
    wanted = role.strip().rstrip("/").rsplit("/", 1)[-1].lower()
    for name, (role_id, _) in ROLES.items():
        if wanted in (name.lower(), role_id):
            return name
    raise ValueError(f"unknown role {role!r}; the lab knows: {', '.join(ROLES)}")


def _allows(patterns: tuple[str, ...], action: str) -> bool:
    return any(action == p or (p.endswith("/*") and action.startswith(p[:-1])) for p in patterns)


@dataclass
class Verdict:
    allowed: bool
    reason: str


def authorize(state: LabState, vault: Vault, vault_url: str, key_name: str | None,
              principal_id: str, operation: str) -> Verdict:
    """May ``principal_id`` perform ``operation`` on ``key_name`` (or the vault) in ``vault``?"""
    action, permission = OPERATIONS[operation]
    if not vault.rbac:
        for policy in vault.access_policies:
            if policy.object_id == principal_id and (
                    permission in policy.keys or "all" in policy.keys):
                return Verdict(True, f"access policy grants '{permission}'")
        return Verdict(False, f"no access policy grants '{permission}' to {principal_id}")
    scopes = {vault_url.lower()}
    if key_name:
        scopes.add(f"{vault_url}/keys/{key_name}".lower())
    if vault.resource_group:
        scopes.add(group_scope(state.subscription_id, vault.resource_group))
    for assignment in state.role_assignments:
        if assignment.principal_id != principal_id or assignment.scope.lower() not in scopes:
            continue
        if _allows(ROLES[assignment.role][1], action):
            return Verdict(True, f"{assignment.role} at {assignment.scope}")
    return Verdict(False, f"caller {principal_id} has no role assignment allowing {action}")
