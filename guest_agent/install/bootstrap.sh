#!/usr/bin/env bash
# Bootstrap the cotenant guest agent on a Confidential VM (Azure Custom Script extension).
#
#   bootstrap.sh --bundle-url URL --bundle-sha256 HEX (--config-b64 B64 | --config-file PATH)
#                [--app-config-file PATH] [--debug] [--dry-run] [--root DIR]
#
# --bundle-url     https URL of the agent bundle (tar.gz: wheels/ + requirements.lock, built by
#                  build-bundle.sh); its SHA-256 is pinned by --bundle-sha256 and every wheel
#                  inside is pinned again by hash (pip --require-hashes, --no-index).
# --config-b64     the agent's TOML configuration, base64 (pass it in the extension's
#                  *protected* settings). It holds no credentials: the agent authenticates with
#                  the VM's managed identity.
# --config-file    the same, from a file already on the VM (e.g. /etc/cotenant/agent.toml
#                  written by the control plane's bootstrapScript); it is re-owned in place.
# --app-config-file PATH  the party's analytics app configuration already on the VM
#                  (/etc/cotenant-analytics/app.toml, written by the bootstrapScript): also
#                  install and start the app (cotenant-analytics.service) as cotenant-app.
# --debug          keep SSH enabled (debug deployments only; visible in the tenant status).
# --dry-run        print every action instead of performing it; needs no root and no network.
# --root DIR       install under DIR instead of / (used with --dry-run by the tests).
#
# What it does: creates the unprivileged user cotenant-agent (group tss for the vTPM), masks
# BOTH ssh.service and ssh.socket unless --debug, installs the pinned bundle into a venv,
# writes the config (0640 root:cotenant-agent), installs and starts the hardened systemd unit,
# and leaves no plaintext or downloaded artifacts behind. With --app-config-file, the same for
# the analytics app: user cotenant-app (not in tss), its own venv from the bundle's
# analytics.lock, config 0640 root:cotenant-app, hardened unit listening on :80.
set -Eeuo pipefail
umask 077

readonly AGENT_USER="cotenant-agent"
readonly UNIT_NAME="cotenant-guest-agent.service"
readonly APP_USER="cotenant-app"
readonly APP_UNIT="cotenant-analytics.service"

BUNDLE_URL=""
BUNDLE_SHA256=""
CONFIG_B64=""
CONFIG_SRC=""
APP_CONFIG_SRC=""
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

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --bundle-url) BUNDLE_URL="${2:?--bundle-url needs a value}"; shift 2 ;;
            --bundle-sha256) BUNDLE_SHA256="${2:?--bundle-sha256 needs a value}"; shift 2 ;;
            --config-b64) CONFIG_B64="${2:?--config-b64 needs a value}"; shift 2 ;;
            --config-file) CONFIG_SRC="${2:?--config-file needs a value}"; shift 2 ;;
            --app-config-file) APP_CONFIG_SRC="${2:?--app-config-file needs a value}"; shift 2 ;;
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
    APP_PREFIX="/opt/cotenant-app"
    APP_VENV="$APP_PREFIX/venv"
    APP_CONF_DIR="${ROOT}/etc/cotenant-analytics"
    APP_CONF_FILE="$APP_CONF_DIR/app.toml"
    APP_UNIT_FILE="${ROOT}/etc/systemd/system/$APP_UNIT"
}

# The app's user: no shell, no home, not in tss (no vTPM), cannot read the agent's config.
create_app_user() {
    if id "$APP_USER" >/dev/null 2>&1; then
        log "user $APP_USER exists"
    else
        run useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --user-group "$APP_USER"
    fi
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
    if [[ -n "$APP_CONFIG_SRC" && "$DRY_RUN" -eq 0 && ! -f "$work/analytics.lock" ]]; then
        die "the bundle has no analytics.lock (build it with build-bundle.sh)"
    fi
    # The venvs must be readable (not writable) by the services' users: 022 while installing.
    umask 022
    install_venv "$VENV" "$work" requirements.lock
    if [[ -n "$APP_CONFIG_SRC" ]]; then
        install_venv "$APP_VENV" "$work" analytics.lock
    fi
    umask 077
    run chown -R root:root "$PREFIX"
    run chmod -R u=rwX,go=rX "$PREFIX"
    if [[ -n "$APP_CONFIG_SRC" ]]; then
        run chown -R root:root "$APP_PREFIX"
        run chmod -R u=rwX,go=rX "$APP_PREFIX"
    fi
}

# install_venv VENV WORK LOCK: an offline, hash-checked install of LOCK's wheels into VENV.
install_venv() {
    run python3 -m venv "$1"
    run "$1/bin/python" -m pip install --no-index --find-links "$2/wheels" \
        --require-hashes --only-binary=:all: --no-cache-dir -r "$2/$3"
}

# place_config DIR FILE GROUP SRC: FILE (0640 root:GROUP, in DIR 0750 root:GROUP) from the
# file SRC (it may be FILE itself: re-owned in place), or from --config-b64 when SRC is empty.
place_config() {
    local dir="$1" file="$2" group="$3" src="$4" tmp
    run install -d -m 0750 -o root -g "$group" "$dir"
    if [[ "$DRY_RUN" -eq 1 ]]; then
        if [[ -n "$src" ]]; then
            printf 'DRY-RUN: install %s as %s (0640 root:%s)\n' "$src" "$file" "$group"
        else
            printf 'DRY-RUN: decode --config-b64 (%d chars) into %s (0640 root:%s)\n' \
                "${#CONFIG_B64}" "$file" "$group"
        fi
        return
    fi
    tmp="$(mktemp "$dir/.config.XXXXXX")"
    if [[ -n "$src" ]]; then
        cat -- "$src" >"$tmp" || { rm -f -- "$tmp"; die "cannot read $src"; }
    else
        printf '%s' "$CONFIG_B64" | base64 --decode >"$tmp" \
            || { rm -f -- "$tmp"; die "--config-b64 is not base64"; }
    fi
    chown "root:$group" "$tmp"
    chmod 0640 "$tmp"
    mv -f -- "$tmp" "$file"
}

write_config() {
    place_config "$CONF_DIR" "$CONF_FILE" "$AGENT_USER" "$CONFIG_SRC"
    if [[ "$DRY_RUN" -eq 0 ]]; then
        "$VENV/bin/python" -m guest_agent check-config --config "$CONF_FILE" >&2 \
            || die "the agent configuration is invalid"
    fi
}

write_app_config() {
    place_config "$APP_CONF_DIR" "$APP_CONF_FILE" "$APP_USER" "$APP_CONFIG_SRC"
    if [[ "$DRY_RUN" -eq 0 ]]; then
        "$APP_VENV/bin/python" -m workloads.analytics --config "$APP_CONF_FILE" --check-config \
            >&2 || die "the analytics app configuration is invalid"
    fi
}

# Install a unit shipped next to this script, enable it and (re)start it: restarted, not only
# started, so a re-run (a redeployed VM, a new challenge) applies its new configuration.
install_unit() {
    local name="$1" target="$2" here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    run install -m 0644 -o root -g root "$here/$name" "$target"
    run systemctl daemon-reload
    run systemctl enable "$name"
    run systemctl restart "$name"
}

main() {
    parse_args "$@"
    readonly_paths
    log "installing the cotenant guest agent (app=${APP_CONFIG_SRC:+yes}, debug=$DEBUG, dry-run=$DRY_RUN)"
    create_user
    if [[ -n "$APP_CONFIG_SRC" ]]; then
        create_app_user
    fi
    lock_down_ssh
    install_bundle
    write_config
    install_unit "$UNIT_NAME" "$UNIT_FILE"
    if [[ -n "$APP_CONFIG_SRC" ]]; then
        write_app_config
        install_unit "$APP_UNIT" "$APP_UNIT_FILE"  # after the agent's: the app's unit wants it
    fi
    # The config came in through the command line: drop it from this shell.
    CONFIG_B64=""
    log "done"
}

main "$@"
