#!/usr/bin/env bash
# Build the guest agent bundle that bootstrap.sh installs on a Confidential VM.
#
#   guest_agent/install/build-bundle.sh OUT_DIR [--python-version 312] [--platform manylinux_2_28_x86_64]
#
# Produces OUT_DIR/bundle.tar.gz (wheels/ + requirements.lock, every wheel pinned by SHA-256)
# and prints the bundle's SHA-256, which the deployment pins in bootstrap.sh --bundle-sha256.
# Dependencies are downloaded as binary wheels for the VM's Python (Ubuntu 24.04: 3.12).
set -Eeuo pipefail

OUT="${1:?usage: build-bundle.sh OUT_DIR [--python-version V] [--platform P]}"
shift
PYVER="312"
PLATFORM="manylinux_2_28_x86_64"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python-version) PYVER="${2:?}"; shift 2 ;;
        --platform) PLATFORM="${2:?}"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
STAGE="$(mktemp -d)"
trap 'rm -rf -- "$STAGE"' EXIT

mkdir -p "$OUT/wheels" "$STAGE/src/cotenant"
cp -R "$REPO/guest_agent" "$STAGE/src/guest_agent"
rm -rf -- "$STAGE/src/guest_agent/install" "$STAGE/src/guest_agent/pyproject.toml"
cp "$REPO/cotenant/__init__.py" "$STAGE/src/cotenant/"
cp -R "$REPO/cotenant/crypto" "$STAGE/src/cotenant/crypto"
cp -R "$REPO/cotenant/wire" "$STAGE/src/cotenant/wire"
find "$STAGE/src" -name '__pycache__' -prune -exec rm -rf -- {} +
cp "$REPO/guest_agent/pyproject.toml" "$STAGE/src/pyproject.toml"

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$OUT/wheels" "$STAGE/src"
AGENT_WHEEL="$(ls "$OUT"/wheels/cotenant_guest_agent-*.whl)"
"$PYTHON" -m pip download --quiet --only-binary=:all: --python-version "$PYVER" \
    --platform "$PLATFORM" --platform manylinux2014_x86_64 --platform any \
    --implementation cp --dest "$OUT/wheels" "$AGENT_WHEEL"

# requirements.lock: name==version --hash=sha256:… for every wheel in the bundle.
"$PYTHON" - "$OUT/wheels" >"$OUT/requirements.lock" <<'PY'
import hashlib, pathlib, sys
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    print(f"{name.replace('_', '-')}=={version} --hash=sha256:{digest}")
PY
tar -czf "$OUT/bundle.tar.gz" -C "$OUT" wheels requirements.lock
sha256sum "$OUT/bundle.tar.gz" | cut -d' ' -f1
