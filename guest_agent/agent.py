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
from cotenant.wire.reports import KeyOutcome, make_outcome, make_outcomes_report, make_report
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
    def report(self, ctx: Context, event: str, **fields: str | None) -> None:
        self.reporter.send(make_report(
            tenant=self.config.tenant, party=self.config.party, vm=self.config.vm_name,
            instance=ctx.instance, nonce=ctx.nonce, event=event, **fields,
        ))

    def report_outcome(self, ctx: Context, outcome: KeyOutcome, *,
                       released_as: str = "released") -> None:
        """One key's outcome as its own report (commands, the local API); a release is
        reported as ``released_as`` (``rotated`` for a rotation)."""
        event = released_as if outcome.event == "released" else outcome.event
        self.report(ctx, event, key_id=outcome.key_id, key_version=outcome.key_version,
                    error=outcome.error, error_code=outcome.error_code)

    def report_outcomes(self, ctx: Context, outcomes: list[KeyOutcome]) -> None:
        """Every key's outcome of the start-up pass in one report."""
        self.reporter.send(make_outcomes_report(
            tenant=self.config.tenant, party=self.config.party, vm=self.config.vm_name,
            instance=ctx.instance, nonce=ctx.nonce, outcomes=outcomes,
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

    def _fresh_tee(self, ctx: Context) -> None:
        """Re-attest (and report it) when the token is too old; raise if that fails."""
        age = self.tee.age()
        if (age is None or age >= TOKEN_MAX_AGE_SECONDS) and not self.attest(ctx):
            raise AttestationError("this VM could not attest")

    def try_release(self, ref: KeyRef, ctx: Context, *, version: str | None = None
                    ) -> tuple[ReleasedKey | None, KeyOutcome]:
        """Release ``ref`` into memory; the key (None if not released) and the outcome, not
        reported. Only an allow-listed key is ever asked for (an isolation probe never comes
        through here)."""
        allowed = self.config.find_key(ref.vault_url, ref.name)
        if allowed is None:
            return None, make_outcome("failed", ref.kid, error_code="KeyNotAllowed",
                                      error=f"{ref.label()} is not in this agent's allow-list")
        ref = allowed
        try:
            self._fresh_tee(ctx)
            released = self.releaser.release(ref, self.tee, version=version)
        except ReleaseDenied as exc:
            log.warning("%s", exc)
            self.keys.fail(ref, exc.code, exc.reason)
            return None, make_outcome("release-denied", ref.kid, error=exc.reason,
                                      error_code=exc.code)
        except (ReleaseFailed, IdentityError, TransientError, AttestationError) as exc:
            code = getattr(exc, "code", exc.__class__.__name__)
            log.error("%s", exc)
            self.keys.fail(ref, code, str(exc))
            return None, make_outcome("failed", ref.kid, error=str(exc), error_code=code)
        self.keys.put(ref, released)
        log.info("released %s version %s", ref.label(), released.version)
        return released, make_outcome("released", released.kid, key_version=released.version)

    def release(self, ref: KeyRef, ctx: Context, *, version: str | None = None,
                event: str = "released") -> ReleasedKey | None:
        """Release ``ref`` into memory and report ``event`` (or the denial/failure)."""
        released, outcome = self.try_release(ref, ctx, version=version)
        self.report_outcome(ctx, outcome, released_as=event)
        return released

    def try_probe(self, ref: KeyRef, ctx: Context) -> tuple[dict[str, object], KeyOutcome]:
        """Ask the vault of ``ref`` — a key this VM must NOT get — for it, with this VM's
        identity and attestation; the vault's answer and the outcome, not reported. A
        release (``isolation-broken``) is discarded unopened: the key is wrapped to this
        VM's TEE key and never unwrapped, stored or served (it is not in the allow-list).
        A 403 is the refusal isolation needs (``isolation-refused``); anything else (vault
        missing, throttled, no attestation) proves nothing and is a failure."""
        try:
            self._fresh_tee(ctx)
            result = self.releaser.probe(ref, self.tee)
        except (IdentityError, TransientError, AttestationError) as exc:
            result = {"vault": ref.vault_url, "name": ref.name, "released": False,
                      "status": None, "code": exc.__class__.__name__, "message": str(exc)}
        if result["released"]:
            log.error("ISOLATION BROKEN: %s was released to this VM; discarded unopened",
                      ref.label())
            return result, make_outcome(
                "isolation-broken", ref.kid, error_code="IsolationBroken",
                error=f"the vault released {ref.label()} to this VM although it is not "
                      "in its allow-list; the agent discarded it unopened")
        if result["status"] == ReleaseDenied.status:
            log.info("isolation holds: %s refused (%s)", ref.label(), result["code"])
            return result, make_outcome("isolation-refused", ref.kid,
                                        error_code=str(result["code"]),
                                        error=str(result["message"]))
        log.warning("isolation probe of %s failed: %s", ref.label(), result["message"])
        return result, make_outcome(
            "failed", ref.kid, error_code=str(result["code"]),
            error=f"isolation probe of {ref.label()} got no refusal from the vault: "
                  f"{result['message']}")

    def probe_isolation(self) -> list[dict[str, object]]:
        """Probe every ``isolation_probes`` key now (the local API's isolation check): the
        vaults' answers; only a (wrong) release is reported."""
        results = []
        for ref in self.config.isolation_probes:
            result, outcome = self.try_probe(ref, self.startup)
            if outcome.event == "isolation-broken":
                self.report_outcome(self.startup, outcome)
            results.append(result)
        return results

    def _release_version(self, ref: KeyRef, version: str) -> ReleasedKey:
        """An older/newer version for one unwrap; not kept, not reported."""
        return self.releaser.release(ref, self.tee, version=version)

    def bootstrap(self) -> None:
        """Attest with the configured challenge (reported at once: the control plane
        verifies the token meanwhile), release every allowed key, then probe every isolation
        key once (a few at a time, releases first), and report every key's outcome in one
        ``outcomes`` report: the control plane's trust matrix needs one per tenant key."""
        ctx = self.startup
        if not self.attest(ctx):
            return
        work: list[Callable[[], KeyOutcome]] = [
            partial(self._outcome_of, self.try_release, ref, ctx) for ref in self.config.keys]
        work += [partial(self._outcome_of, self.try_probe, ref, ctx)
                 for ref in self.config.isolation_probes]
        if len(work) <= 1:
            done = [step() for step in work]
        else:
            # The pool starts its tasks in submission order: every release before any probe.
            with ThreadPoolExecutor(max_workers=min(RELEASE_CONCURRENCY, len(work)),
                                    thread_name_prefix="release") as pool:
                done = list(pool.map(lambda step: step(), work))
        if done:
            self.report_outcomes(ctx, done)

    @staticmethod
    def _outcome_of(attempt: Callable[[KeyRef, Context], tuple[object, KeyOutcome]],
                    ref: KeyRef, ctx: Context) -> KeyOutcome:
        """The outcome of one start-up release or probe. An unexpected error is that key's
        failure: it must not hold back the one report of every other key's outcome."""
        try:
            return attempt(ref, ctx)[1]
        except Exception as exc:
            log.exception("trying %s failed unexpectedly", ref.label())
            return make_outcome("failed", ref.kid, error_code=type(exc).__name__,
                                error=f"unexpected {type(exc).__name__} while trying "
                                      f"{ref.label()}; see the agent's log")

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
