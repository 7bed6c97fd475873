"""Spec fragments shared by the foundation tests."""

# The spec's required gateway section (placeholder vault and identity, as in the examples).
GATEWAY = {
    "tls_certificate_secret_id": "https://kv-test-tls.vault.azure.net/secrets/gateway-tls",
    "identity_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-certs"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-test-agw",
}
