#!/usr/bin/env bash
# Bootstrap the cotenant guest agent on a Confidential VM (Azure Custom Script extension).
#
#   bootstrap.sh --bundle-url URL --bundle-sha256 HEX (--config-b64 B64 | --config-file PATH)
#                [--debug] [--dry-run] [--root DIR]
#
# --bundle-url     https URL of the agent bundle (tar.gz: wheels/ + requirements.lock, built by
#                  build-bundle.sh); its SHA-256 is pinned by --bundle-sha256 and every wheel
#                  inside is pinned again by hash (pip --require-hashes, --no-index).
# --config-b64     the agent's TOML configuration, base64 (pass it in the extension's
#                  *protected* settings). It holds no credentials: the agent authenticates with
#                  the VM's managed identity.
# --config-file    the same, from a file already on the VM (e.g. /etc/cotenant/agent.toml
#                  written by the control plane's bootstrapScript); it is re-owned in place.
# --debug          keep SSH enabled (debug deployments only; visible in the tenant status).
# --dry-run        print every action instead of performing it; needs no root and no network.
# --root DIR       install under DIR instead of / (used with --dry-run by the tests).
#
# What it does: creates the unprivileged user cotenant-agent (group tss for the vTPM), masks
# BOTH ssh.service and ssh.socket unless --debug, installs the pinned bundle into a venv,
# writes the config (0640 root:cotenant-agent), installs and starts the hardened systemd unit,
# and leaves no plaintext or downloaded artifacts behind.
set -Eeuo pipefail
umask 077

readonly AGENT_USER="cotenant-agent"
readonly UNIT_NAME="cotenant-guest-agent.service"

BUNDLE_URL=""
BUNDLE_SHA256=""
CONFIG_B64=""
CONFIG_SRC=""
DEBUG=0
DRY_RUN=0
ROOT=""

log() { printf 'cotenant-bootstrap: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# run CMD...: execute, or print it in dry-run mode.
run() {
    if [[ "$DRY_RUN" -eq 1 ]]; then
        printf 'DRY-RUN:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --bundle-url) BUNDLE_URL="${2:?--bundle-url needs a value}"; shift 2 ;;
            --bundle-sha256) BUNDLE_SHA256="${2:?--bundle-sha256 needs a value}"; shift 2 ;;
            --config-b64) CONFIG_B64="${2:?--config-b64 needs a value}"; shift 2 ;;
            --config-file) CONFIG_SRC="${2:?--config-file needs a value}"; shift 2 ;;
            --debug) DEBUG=1; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            --root) ROOT="${2:?--root needs a value}"; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown argument: $1" ;;
        esac
    done
    [[ "$BUNDLE_URL" == https://* ]] || die "--bundle-url must be an https URL"
    [[ "$BUNDLE_SHA256" =~ ^[0-9a-f]{64}$ ]] || die "--bundle-sha256 must be 64 lowercase hex digits"
    if [[ -n "$CONFIG_B64" && -n "$CONFIG_SRC" ]]; then
        die "give --config-b64 or --config-file, not both"
    fi
    [[ -n "$CONFIG_B64" || -n "$CONFIG_SRC" ]] || die "--config-b64 or --config-file is required"
    if [[ "$DRY_RUN" -eq 0 && "$(id -u)" -ne 0 ]]; then
        die "must run as root (or use --dry-run)"
    fi
    if [[ -n "$ROOT" && "$DRY_RUN" -eq 0 ]]; then
        die "--root is only for --dry-run"
    fi
}

readonly_paths() {
    PREFIX="/opt/cotenant-agent"
    VENV="$PREFIX/venv"
    CONF_DIR="${ROOT}/etc/cotenant"
    CONF_FILE="$CONF_DIR/agent.toml"
    UNIT_FILE="${ROOT}/etc/systemd/system/$UNIT_NAME"
}

create_user() {
    if ! getent group tss >/dev/null 2>&1; then
        run groupadd --system tss
    fi
    if id "$AGENT_USER" >/dev/null 2>&1; then
        log "user $AGENT_USER exists"
    else
        run useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --user-group --groups tss "$AGENT_USER"
    fi
}

lock_down_ssh() {
    if [[ "$DEBUG" -eq 1 ]]; then
        log "DEBUG deployment: SSH stays enabled"
        return
    fi
    # Masking only ssh.service leaves ssh.socket listening (socket activation): mask both.
    run systemctl disable --now ssh.socket ssh.service
    run systemctl mask ssh.socket ssh.service
}

WORK=""
cleanup() { if [[ -n "$WORK" && "$DRY_RUN" -eq 0 ]]; then rm -rf -- "$WORK"; fi; }
trap cleanup EXIT

install_bundle() {
    local work bundle actual
    if [[ "$DRY_RUN" -eq 1 ]]; then
        work="${ROOT:-/tmp}/cotenant-bundle.dryrun"
    else
        # Removed on exit whatever happens (cleanup): no downloaded artifacts stay behind.
        WORK="$(mktemp -d)"
        work="$WORK"
    fi
    bundle="$work/bundle.tar.gz"
    run env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3-venv
    run curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
        --retry 5 --retry-delay 3 --output "$bundle" "$BUNDLE_URL"
    if [[ "$DRY_RUN" -eq 1 ]]; then
        printf 'DRY-RUN: verify sha256(%s) == %s\n' "$bundle" "$BUNDLE_SHA256"
    else
        actual="$(sha256sum "$bundle" | cut -d' ' -f1)"
        [[ "$actual" == "$BUNDLE_SHA256" ]] || die "bundle hash mismatch (got $actual)"
    fi
    run tar -xzf "$bundle" -C "$work"
    # The venv must be readable (not writable) by the agent's user: 022 while installing.
    umask 022
    run python3 -m venv "$VENV"
    run "$VENV/bin/python" -m pip install --no-index --find-links "$work/wheels" \
        --require-hashes --only-binary=:all: --no-cache-dir -r "$work/requirements.lock"
    umask 077
    run chown -R root:root "$PREFIX"
    run chmod -R u=rwX,go=rX "$PREFIX"
}

write_config() {
    local tmp
    run install -d -m 0750 -o root -g "$AGENT_USER" "$CONF_DIR"
    if [[ "$DRY_RUN" -eq 1 ]]; then
        if [[ -n "$CONFIG_SRC" ]]; then
            printf 'DRY-RUN: install %s as %s (0640 root:%s)\n' "$CONFIG_SRC" "$CONF_FILE" "$AGENT_USER"
        else
            printf 'DRY-RUN: decode --config-b64 (%d chars) into %s (0640 root:%s)\n' \
                "${#CONFIG_B64}" "$CONF_FILE" "$AGENT_USER"
        fi
        return
    fi
    tmp="$(mktemp "$CONF_DIR/.agent.toml.XXXXXX")"
    if [[ -n "$CONFIG_SRC" ]]; then
        cat -- "$CONFIG_SRC" >"$tmp" || { rm -f -- "$tmp"; die "cannot read $CONFIG_SRC"; }
    else
        printf '%s' "$CONFIG_B64" | base64 --decode >"$tmp" \
            || { rm -f -- "$tmp"; die "--config-b64 is not base64"; }
    fi
    chown "root:$AGENT_USER" "$tmp"
    chmod 0640 "$tmp"
    mv -f -- "$tmp" "$CONF_FILE"
    "$VENV/bin/python" -m guest_agent check-config --config "$CONF_FILE" >&2 \
        || die "the agent configuration is invalid"
}

install_unit() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    run install -m 0644 -o root -g root "$here/$UNIT_NAME" "$UNIT_FILE"
    run systemctl daemon-reload
    run systemctl enable --now "$UNIT_NAME"
}

main() {
    parse_args "$@"
    readonly_paths
    log "installing the cotenant guest agent (debug=$DEBUG, dry-run=$DRY_RUN)"
    create_user
    lock_down_ssh
    install_bundle
    write_config
    install_unit
    # The config came in through the command line: drop it from this shell.
    CONFIG_B64=""
    log "done"
}

main "$@"
