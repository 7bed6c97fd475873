"""Cryptography for cotenant: sealed data files, Secure Key Release unwrap, token verification.

Modules:
    encoding  base64url helpers shared by the JOSE-shaped formats.
    skr       Key Vault release responses: JWS verification and ``key_hsm`` unwrap.
    tokens    Microsoft Azure Attestation token verification (OpenID discovery + JWKS).
    envelope  the sealed file format (chunked AES-256-GCM with an RSA-OAEP-256 wrapped data key).
"""
