"""The cvm module's secure ``bootstrapScript``: a shell script that writes the guest agent's
configuration and starts the agent (run once by the Custom Script extension).

The configuration travels as a quoted here-document between fixed markers, so the lab (which
plays the extension's part) reads it back with :func:`extract_agent_config` exactly as the
script would write it.
"""

from __future__ import annotations

import re

CONFIG_PATH = "/etc/cotenant/agent.toml"
_MARKER = "COTENANT_AGENT_TOML"
_BLOCK = re.compile(rf"<<'{_MARKER}'\n(.*?)\n{_MARKER}\n", re.DOTALL)


def render_bootstrap(agent_toml: str) -> str:
    if f"\n{_MARKER}\n" in f"\n{agent_toml}\n":
        raise ValueError("the agent configuration contains the here-document marker")
    return (
        "#!/bin/sh\n"
        "# cotenant guest agent bootstrap (Custom Script extension, protectedSettings)\n"
        "set -eu\n"
        "umask 077\n"
        "install -d -m 0700 /etc/cotenant\n"
        f"cat > {CONFIG_PATH} <<'{_MARKER}'\n{agent_toml.rstrip(chr(10))}\n{_MARKER}\n"
        f"chmod 0600 {CONFIG_PATH}\n"
        "python3 -m pip install --quiet --no-input /opt/cotenant/guest_agent*.whl\n"
        "systemctl enable --now cotenant-guest-agent.service\n"
    )


def extract_agent_config(script: str) -> str | None:
    """The agent TOML a bootstrap script writes, or None if it writes none."""
    found = _BLOCK.search(script)
    return found.group(1) + "\n" if found else None
