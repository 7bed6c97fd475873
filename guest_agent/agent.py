"""The guest agent: attest, release the allowed keys, probe the forbidden ones, report, then
serve and obey commands."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import httpx

from cotenant.crypto.skr import ReleasedKey
from cotenant.wire.commands import Command
from cotenant.wire.reports import make_report
from guest_agent.backends import AttestationBackend, AttestationError, create_backend
from guest_agent.commands import CommandLoop
from guest_agent.config import AgentConfig, KeyRef
from guest_agent.imds import IdentityError, ImdsClient
from guest_agent.keystore import KeyStore
from guest_agent.queues import queue_client
from guest_agent.release import KeyReleaser, ReleaseDenied, ReleaseFailed, load_trust_anchors
from guest_agent.reporter import Reporter
from guest_agent.retry import Backoff, TransientError
from guest_agent.tee import Tee
from guest_agent.unwrap import DataKeyUnwrapper

log = logging.getLogger("guest_agent")
TOKEN_MAX_AGE_SECONDS = 3600.0
ATTEST_ATTEMPTS = 3
# Release attempts (and isolation probes) in flight at once at start-up: each is a network
# round trip to a vault (token check, wrap, JWS) and the trust matrix needs one per key of the
# tenant. Measured with bench/deploy.py (ten parties, one lab process serving every vault):
# 6 ended the attestation phase sooner than 3 (now that reports no longer wait for each
# other) and than 10.
RELEASE_CONCURRENCY = 6
_HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class Context:
    """Which orchestration a report answers: the startup challenge or a command's."""

    instance: str
    nonce: str


@dataclass
class Agent:
    config: AgentConfig
    backend: AttestationBackend
    reporter: Reporter
    imds: ImdsClient
    releaser: KeyReleaser
    commands: CommandLoop | None = None
    attest_backoff: Backoff = field(default_factory=lambda: Backoff(base_seconds=1.0))
    outbox_retry_seconds: float = 5.0
    keys: KeyStore = field(init=False)
    tee: Tee = field(init=False)
    unwrapper: DataKeyUnwrapper = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.keys = KeyStore(self.config.keys)
        self.tee = Tee(self.backend)
        self.unwrapper = DataKeyUnwrapper(self.config, self.keys, self._release_version)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: AgentConfig, backend: AttestationBackend | None = None,
                    tee: Tee | None = None) -> Agent:
        bundle = config.tls.resolved_bundle(os.environ)
        # trust_env: proxies (the lab routes *.vault.azure.net through one) come from the
        # environment; URLs never do.
        verify = ssl.create_default_context(cafile=bundle) if bundle else True
        http = httpx.Client(timeout=_HTTP_TIMEOUT, verify=verify,
                            follow_redirects=False, trust_env=True)
        # IMDS is link-local: never through a proxy (Azure's guidance), never redirected.
        imds_http = httpx.Client(timeout=_HTTP_TIMEOUT, follow_redirects=False, trust_env=False)
        imds = ImdsClient(config.imds_url(os.environ), config.identity.client_id, imds_http)
        anchors = load_trust_anchors(bundle)
        reporter = Reporter(queue_client(config.queues, config.queues.reports_url, imds))
        agent = cls(
            config=config,
            backend=tee.backend if tee else backend or create_backend(config),
            reporter=reporter,
            imds=imds,
            releaser=KeyReleaser(http, imds, anchors),
        )
        if tee is not None:
            agent.tee = tee
        agent.commands = CommandLoop(
            queue_client(config.queues, config.queues.commands_url, imds),
            agent.handle, config.queues.poll_seconds,
        )
        return agent

    @property
    def startup(self) -> Context:
        return Context(self.config.orchestration.instance, self.config.orchestration.nonce)

    # --- reporting ----------------------------------------------------------------------
    def report(self, ctx: Context, event: str, *, released: ReleasedKey | None = None,
               key: KeyRef | None = None, **extra: str | None) -> None:
        key_id = released.kid if released else (key.kid if key else None)
        self.reporter.send(make_report(
            tenant=self.config.tenant, party=self.config.party, vm=self.config.vm_name,
            instance=ctx.instance, nonce=ctx.nonce, event=event, key_id=key_id,
            key_version=released.version if released else None, **extra,
        ))

    # --- attestation and release --------------------------------------------------------
    def attest(self, ctx: Context) -> bool:
        """Attest (a few attempts: the service may be briefly unreachable) and report."""
        for attempt in range(ATTEST_ATTEMPTS):
            try:
                token = self.tee.attest(ctx.nonce)
                break
            except (AttestationError, TransientError) as exc:
                log.warning("attestation attempt %d failed: %s", attempt + 1, exc)
                if attempt + 1 == ATTEST_ATTEMPTS:
                    self.report(ctx, "failed", error=f"attestation failed: {exc}",
                                error_code="attestation")
                    return False
                self._stop.wait(self.attest_backoff.delay(attempt))
        log.info("attested (nonce %s…)", ctx.nonce[:8])
        self.report(ctx, "attested", token=token)
        return True

    def _fresh_tee(self, ctx: Context) -> bool:
        age = self.tee.age()
        if age is not None and age < TOKEN_MAX_AGE_SECONDS:
            return True
        return self.attest(ctx)

    def release(self, ref: KeyRef, ctx: Context, *, version: str | None = None,
                event: str = "released") -> ReleasedKey | None:
        """Release ``ref`` into memory and report ``event`` (or the denial/failure). Only an
        allow-listed key is ever asked for (an isolation probe never comes through here)."""
        allowed = self.config.find_key(ref.vault_url, ref.name)
        if allowed is None:
            self.report(ctx, "failed", key=ref, error_code="KeyNotAllowed",
                        error=f"{ref.label()} is not in this agent's allow-list")
            return None
        ref = allowed
        if not self._fresh_tee(ctx):
            return None
        try:
            released = self.releaser.release(ref, self.tee, version=version)
        except ReleaseDenied as exc:
            log.warning("%s", exc)
            self.keys.fail(ref, exc.code, exc.reason)
            self.report(ctx, "release-denied", key=ref, error=exc.reason, error_code=exc.code)
            return None
        except (ReleaseFailed, IdentityError, TransientError, AttestationError) as exc:
            code = getattr(exc, "code", exc.__class__.__name__)
            log.error("%s", exc)
            self.keys.fail(ref, code, str(exc))
            self.report(ctx, "failed", key=ref, error=str(exc), error_code=code)
            return None
        self.keys.put(ref, released)
        log.info("released %s version %s", ref.label(), released.version)
        self.report(ctx, event, released=released)
        return released

    def probe(self, ref: KeyRef, ctx: Context, *, report_refusal: bool) -> dict[str, object]:
        """Ask the vault of ``ref`` — a key this VM must NOT get — for it, with this VM's
        identity and attestation; the vault's answer. The expected refusal is reported when
        ``report_refusal``; a release always is (``isolation-broken``), its response being
        discarded unopened: the key is wrapped to this VM's TEE key and never unwrapped,
        stored or served (it is not in the allow-list)."""
        try:
            if not self._fresh_tee(ctx):
                raise AttestationError("this VM could not attest")
            result = self.releaser.probe(ref, self.tee)
        except (IdentityError, TransientError, AttestationError) as exc:
            result = {"vault": ref.vault_url, "name": ref.name, "released": False,
                      "status": None, "code": exc.__class__.__name__, "message": str(exc)}
        if result["released"]:
            log.error("ISOLATION BROKEN: %s was released to this VM; discarded unopened",
                      ref.label())
            self.report(ctx, "isolation-broken", key=ref, error_code="IsolationBroken",
                        error=f"the vault released {ref.label()} to this VM although it is not "
                              "in its allow-list; the agent discarded it unopened")
        elif report_refusal:
            self._report_refusal(ref, ctx, result)
        return result

    def _report_refusal(self, ref: KeyRef, ctx: Context, result: dict[str, object]) -> None:
        """A 403 is the refusal isolation needs; anything else (vault missing, throttled,
        no attestation) proves nothing and is reported as a failure."""
        if result["status"] == ReleaseDenied.status:
            log.info("isolation holds: %s refused (%s)", ref.label(), result["code"])
            self.report(ctx, "isolation-refused", key=ref, error_code=str(result["code"]),
                        error=str(result["message"]))
        else:
            log.warning("isolation probe of %s failed: %s", ref.label(), result["message"])
            self.report(ctx, "failed", key=ref, error_code=str(result["code"]),
                        error=f"isolation probe of {ref.label()} got no refusal from the "
                              f"vault: {result['message']}")

    def probe_isolation(self) -> list[dict[str, object]]:
        """Probe every ``isolation_probes`` key now (the local API's isolation check): the
        vaults' answers; only a (wrong) release is reported."""
        return [self.probe(ref, self.startup, report_refusal=False)
                for ref in self.config.isolation_probes]

    def _release_version(self, ref: KeyRef, version: str) -> ReleasedKey:
        """An older/newer version for one unwrap; not kept, not reported."""
        return self.releaser.release(ref, self.tee, version=version)

    def bootstrap(self) -> None:
        """Attest with the configured challenge, release every allowed key, then probe every
        isolation key once (a few at a time, releases first; each outcome is reported as
        soon as it is known: the control plane's trust matrix needs one per tenant key)."""
        ctx = self.startup
        if not self.attest(ctx):
            return
        work: list[Callable[[], object]] = [partial(self.release, ref, ctx)
                                            for ref in self.config.keys]
        work += [partial(self.probe, ref, ctx, report_refusal=True)
                 for ref in self.config.isolation_probes]
        if len(work) <= 1:
            for step in work:
                step()
            return
        # The pool starts its tasks in submission order: every release before any probe.
        with ThreadPoolExecutor(max_workers=min(RELEASE_CONCURRENCY, len(work)),
                                thread_name_prefix="release") as pool:
            for _ in pool.map(lambda step: step(), work):
                pass

    # --- commands -----------------------------------------------------------------------
    def handle(self, command: Command) -> None:
        ctx = Context(command.instance or self.startup.instance,
                      command.nonce or self.startup.nonce)
        log.info("command %s (%s)", command.command, command.id)
        if command.command == "wipe":
            self.keys.wipe()
            return
        if command.command == "re-attest":
            self.attest(ctx)
            return
        targets = self.config.keys if command.key is None else [command.key]
        for ref in targets:  # a key outside the allow-list is refused (and reported) there
            self.release(ref, ctx, version=command.version, event="rotated")

    # --- background work ----------------------------------------------------------------
    def start_background(self) -> None:
        if self.commands is not None:
            self.commands.start()
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)

    def _heartbeat(self) -> None:
        """Heartbeats every ``heartbeat_seconds``; reports still in the outbox (queue was
        unreachable) are retried every few seconds in between."""
        tick = min(self.outbox_retry_seconds, self.config.heartbeat_seconds)
        next_beat = time.monotonic() + self.config.heartbeat_seconds
        while not self._stop.wait(tick):
            if time.monotonic() >= next_beat:
                next_beat += self.config.heartbeat_seconds
                self.report(self.startup, "heartbeat")
            elif self.reporter.pending:
                self.reporter.flush()

    def close(self) -> None:
        """Stop background work and drop every key from memory."""
        self._stop.set()
        if self.commands is not None:
            self.commands.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.keys.wipe()
        self.tee.forget()
        self.imds.forget()
        self.imds.http.close()
        self.reporter.flush()
        self.reporter.close()
        self.releaser.http.close()
        self.backend.close()
