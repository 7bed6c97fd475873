"""Woodgrove's aggregation run: partner keys, sealed files, decryption in the CVM, aggregates.

Keys are released by the local guest agent (it holds only the keys its identity is granted
and the release policies allow); the sealed files are streamed from each partner's own
storage through the agent's decrypt stream; the plaintext exists only in this process's
memory, as parsed records, until the aggregates are computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO

from guest_agent.client import AgentClient, AgentError
from workloads.analytics.aggregates import compute_report
from workloads.analytics.config import AppConfig, Partner
from workloads.analytics.records import Person, RecordError, read_people
from workloads.analytics.runonce import Job, Progress, PublicError
from workloads.streams import text_reader

OpenBlob = Callable[[Partner], BinaryIO]


def aggregation_job(
    config: AppConfig,
    agent: AgentClient,
    open_blob: OpenBlob,
    *,
    key_wait_seconds: float = 120.0,
    poll_seconds: float = 1.0,
) -> Job:
    def job(progress: Progress) -> dict[str, Any]:
        parties: dict[str, list[Person]] = {}
        for partner in config.partners:
            _wait_for_key(agent, partner, progress, key_wait_seconds, poll_seconds)
            parties[partner.display_name] = _decrypt_records(
                agent, partner, open_blob, progress, config.k
            )
        progress("compute", f"computing the aggregates (k = {config.k})")
        reference = config.reference_date or datetime.now(UTC).date()
        report = compute_report(parties, reference_date=reference, k=config.k)
        return report.model_dump(mode="json")

    return job


def key_entry(agent: AgentClient, partner: Partner) -> dict[str, Any] | None:
    entries = agent.keys()
    for entry in entries:
        vault = str(entry.get("vault", "")).lower().rstrip("/")
        if vault == partner.key_vault.lower() and entry.get("name") == partner.key_name:
            return entry
    return None


def _wait_for_key(
    agent: AgentClient, partner: Partner, progress: Progress, wait: float, poll: float
) -> None:
    progress("release", f"asking this VM's guest agent for {partner.display_name}'s key")
    deadline = time.monotonic() + wait
    while True:
        try:
            entry = key_entry(agent, partner)
        except AgentError as exc:
            raise PublicError(f"the guest agent is not answering ({exc.code})") from None
        if entry is None:
            raise PublicError(
                f"this VM's guest agent is not configured for {partner.display_name}'s key"
            )
        if entry.get("state") == "released":
            progress(
                "release",
                f"{partner.display_name}'s key released to this attested VM "
                f"(version {entry.get('version', '?')})",
            )
            return
        if entry.get("state") == "denied":
            raise PublicError(
                f"Key Vault refused to release {partner.display_name}'s key "
                f"({entry.get('error_code', 'denied')})"
            )
        if time.monotonic() >= deadline:
            raise PublicError(f"{partner.display_name}'s key was not released in time")
        time.sleep(poll)


def _decrypt_records(
    agent: AgentClient, partner: Partner, open_blob: OpenBlob, progress: Progress, k: int
) -> list[Person]:
    progress("fetch", f"fetching {partner.display_name}'s sealed file from its own storage")
    sealed = open_blob(partner)
    progress("decrypt", f"decrypting {partner.display_name}'s records inside this VM")
    try:
        with text_reader(agent.decrypt_stream(sealed)) as text:
            people = read_people(text)
    except AgentError as exc:
        raise PublicError(
            f"the guest agent could not decrypt {partner.display_name}'s file ({exc.code})"
        ) from None
    except RecordError as exc:
        raise PublicError(f"{partner.display_name}'s file is not valid: {exc}") from None
    shown = str(len(people)) if len(people) >= k else f"fewer than {k}"
    progress("decrypt", f"{partner.display_name}: {shown} records decrypted in memory")
    return people
