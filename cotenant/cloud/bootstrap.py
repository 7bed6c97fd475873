"""The cvm module's secure ``bootstrapScript`` and the files the Custom Script extension fetches.

The extension downloads ``bootstrap.sh`` and the systemd unit (``fileUris``, in the protected
settings next to the script) into its working directory and runs the script, which

1. writes the guest agent's TOML configuration to ``/etc/cotenant/agent.toml`` (root-only while
   staged; the script's first here-document, quoted, which is where the lab — playing the
   extension's part — reads the configuration from: ``cotenant.lab.manager``);
2. checks the downloaded files against the SHA-256 of the copies this control plane ships;
3. runs ``bootstrap.sh --config-file /etc/cotenant/agent.toml --bundle-url … --bundle-sha256 …``,
   which creates the unprivileged agent user, installs the pinned bundle (hash-checked), re-owns
   the configuration ``0640 root:cotenant-agent`` so the agent can read it, and installs and
   starts the hardened unit.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONFIG_PATH = "/etc/cotenant/agent.toml"
INSTALL_DIR = Path(__file__).resolve().parents[2] / "guest_agent" / "install"
INSTALL_FILES = ("bootstrap.sh", "cotenant-guest-agent.service")
_MARKER = "COTENANT_AGENT_TOML"
_HASHES_MARKER = "COTENANT_FILE_HASHES"


class AgentInstall(BaseModel):
    """Where a VM gets the guest agent (control-plane settings, see docs/control-plane.md).

    ``bundle_url``/``bundle_sha256``: the bundle built by ``guest_agent/install/build-bundle.sh``
    (``COTENANT_AGENT_BUNDLE_URL``/``COTENANT_AGENT_BUNDLE_SHA256``). ``files_url``: the https
    folder holding ``bootstrap.sh`` and ``cotenant-guest-agent.service``
    (``COTENANT_AGENT_FILES_URL``).
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
        """The extension's ``fileUris``: bootstrap.sh and the unit, fetched next to the script."""
        return [f"{self.files_url}/{name}" for name in INSTALL_FILES]


def install_file_hashes(directory: Path = INSTALL_DIR) -> dict[str, str]:
    """SHA-256 of the install files this control plane ships (what the VM must have fetched)."""
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in INSTALL_FILES}


def render_bootstrap(agent_toml: str, install: AgentInstall) -> str:
    if f"\n{_MARKER}\n" in f"\n{agent_toml}\n":
        raise ValueError("the agent configuration contains the here-document marker")
    hashes = "".join(f"{digest}  {name}\n" for name, digest in install_file_hashes().items())
    command = shlex.join(["bash", "./bootstrap.sh", "--config-file", CONFIG_PATH,
                          "--bundle-url", install.bundle_url,
                          "--bundle-sha256", install.bundle_sha256])
    return (
        "#!/bin/bash\n"
        "# cotenant guest agent bootstrap (Custom Script extension, protectedSettings; runs in\n"
        "# the extension's download folder, next to the fileUris bootstrap.sh and the unit)\n"
        "set -euo pipefail\n"
        "umask 077\n"
        "install -d -m 0700 -o root -g root /etc/cotenant\n"
        f"cat > {CONFIG_PATH} <<'{_MARKER}'\n{agent_toml.rstrip(chr(10))}\n{_MARKER}\n"
        f"chmod 0600 {CONFIG_PATH}\n"
        f"sha256sum --check --strict --quiet <<'{_HASHES_MARKER}'\n{hashes}{_HASHES_MARKER}\n"
        f"exec {command}\n"
    )

