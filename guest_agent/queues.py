"""Storage queue clients: Azurite connection string in the lab, managed identity in Azure."""

from __future__ import annotations

from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from guest_agent.config import Queues
from guest_agent.imds import ImdsClient, ImdsCredential


def queue_client(queues: Queues, url: str, imds: ImdsClient) -> QueueClient:
    """A client for the queue at ``url``. Messages are sent base64-encoded (what the Azure
    Functions queue trigger expects); received messages are decoded by
    ``cotenant.wire.codec.decode_json``."""
    name = Queues.queue_name(url)
    policy = TextBase64EncodePolicy()
    if queues.connection_string:
        return QueueClient.from_connection_string(
            queues.connection_string, name, message_encode_policy=policy
        )
    return QueueClient(
        Queues.account_url(url), name, credential=ImdsCredential(imds),
        message_encode_policy=policy,
    )
