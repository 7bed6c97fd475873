"""The lab: an embedded, offline Azure for cotenant.

Services (one process, ``cotenant lab serve``): attestation authorities (:mod:`.maa`),
Key Vault (:mod:`.vault`), managed identities and IMDS (:mod:`.identity`), the resource
manager (:mod:`.manager`), simulated CVMs (:mod:`.vms`, :mod:`.vtpm`), fault injection
(:mod:`.faults`), all reached by their real Azure host names through the lab proxy
(:mod:`.proxy`) with TLS from the lab CA (:mod:`.ca`). Use it from code with
:class:`cotenant.lab.client.LabClient` and from tests with :mod:`cotenant.lab.testing`.
"""
