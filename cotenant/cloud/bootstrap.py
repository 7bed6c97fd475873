"""The cvm module's secure ``bootstrapScript`` and the files the Custom Script extension fetches.

The extension downloads ``bootstrap.sh`` and the systemd units (``fileUris``, in the protected
settings next to the script) into its working directory and runs the script, which

1. writes the guest agent's TOML configuration to ``/etc/cotenant/agent.toml`` (root-only while
   staged; the script's first here-document, quoted, which is where the lab — playing the
   extension's part — reads the configuration from: ``cotenant.lab.manager``);
2. for a party with an analytics app, writes the app's TOML configuration to
   ``/etc/cotenant-analytics/app.toml`` (root-only while staged; the second quoted
   here-document, after the agent's; no secret: the app reads the partners' storage with the
   VM's managed identity);
3. checks the downloaded files against the SHA-256 of the copies this control plane ships;
4. runs ``bootstrap.sh --config-file /etc/cotenant/agent.toml [--app-config-file
   /etc/cotenant-analytics/app.toml] --bundle-url … --bundle-sha256 …``, which creates the
   unprivileged users, installs the pinned bundle (hash-checked), re-owns each configuration
   ``0640 root:<its user>`` and installs and starts the hardened units (the app's after the
   agent's).
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONFIG_PATH = "/etc/cotenant/agent.toml"
APP_CONFIG_PATH = "/etc/cotenant-analytics/app.toml"
INSTALL_DIR = Path(__file__).resolve().parents[2] / "guest_agent" / "install"
INSTALL_FILES = ("bootstrap.sh", "cotenant-guest-agent.service", "cotenant-analytics.service")
_MARKER = "COTENANT_AGENT_TOML"
_APP_MARKER = "COTENANT_APP_TOML"
_HASHES_MARKER = "COTENANT_FILE_HASHES"


class AgentInstall(BaseModel):
    """Where a VM gets the guest agent (control-plane settings, see docs/control-plane.md).

    ``bundle_url``/``bundle_sha256``: the bundle built by ``guest_agent/install/build-bundle.sh``
    (``COTENANT_AGENT_BUNDLE_URL``/``COTENANT_AGENT_BUNDLE_SHA256``). ``files_url``: the https
    folder holding ``INSTALL_FILES`` (``bootstrap.sh`` and the units
    ``cotenant-guest-agent.service`` and ``cotenant-analytics.service``;
    ``COTENANT_AGENT_FILES_URL``).
    """

    model_config = ConfigDict(frozen=True)

    bundle_url: str = Field(pattern=r"^https://[^\s'\"\\]+$")
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    files_url: str = Field(pattern=r"^https://[^\s'\"\\?#]+$")

    @field_validator("files_url")
    @classmethod
    def _folder(cls, value: str) -> str:
        return value.rstrip("/")

    def file_uris(self) -> list[str]:
        """The extension's ``fileUris``: bootstrap.sh and the units, fetched next to the script."""
        return [f"{self.files_url}/{name}" for name in INSTALL_FILES]


def install_file_hashes(directory: Path = INSTALL_DIR) -> dict[str, str]:
    """SHA-256 of the install files this control plane ships (what the VM must have fetched)."""
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in INSTALL_FILES}


def _staged(path: str, text: str, marker: str, what: str) -> str:
    """Shell lines writing ``text`` to ``path`` (root-only, in a root-only folder) through a
    quoted here-document (no expansion)."""
    if f"\n{marker}\n" in f"\n{text}\n":
        raise ValueError(f"the {what} contains the here-document marker")
    folder = path.rsplit("/", 1)[0]
    return (f"install -d -m 0700 -o root -g root {folder}\n"
            f"cat > {path} <<'{marker}'\n{text.rstrip(chr(10))}\n{marker}\n"
            f"chmod 0600 {path}\n")


def render_bootstrap(agent_toml: str, install: AgentInstall, app_toml: str | None = None) -> str:
    """The bootstrap script of one CVM: the agent's configuration ``agent_toml`` and, for a
    party with an analytics app, the app's ``app_toml`` (``cotenant.wire.app.AppConfig``)."""
    staged = _staged(CONFIG_PATH, agent_toml, _MARKER, "agent configuration")
    app = ["--app-config-file", APP_CONFIG_PATH] if app_toml is not None else []
    if app_toml is not None:  # after the agent's: the lab reads the first here-document
        staged += _staged(APP_CONFIG_PATH, app_toml, _APP_MARKER, "app configuration")
    hashes = "".join(f"{digest}  {name}\n" for name, digest in install_file_hashes().items())
    command = shlex.join(["bash", "./bootstrap.sh", "--config-file", CONFIG_PATH, *app,
                          "--bundle-url", install.bundle_url,
                          "--bundle-sha256", install.bundle_sha256])
    return (
        "#!/bin/bash\n"
        "# cotenant guest agent bootstrap (Custom Script extension, protectedSettings; runs in\n"
        "# the extension's download folder, next to the fileUris bootstrap.sh and the units)\n"
        "set -euo pipefail\n"
        "umask 077\n"
        f"{staged}"
        f"sha256sum --check --strict --quiet <<'{_HASHES_MARKER}'\n{hashes}{_HASHES_MARKER}\n"
        f"exec {command}\n"
    )

