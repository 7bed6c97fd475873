#!/usr/bin/env bash
# Build the guest agent bundle that bootstrap.sh installs on a Confidential VM.
#
#   guest_agent/install/build-bundle.sh OUT_DIR [--python-version 312] [--platform manylinux_2_28_x86_64]
#
# Produces OUT_DIR/bundle.tar.gz and prints its SHA-256, which the deployment pins in
# bootstrap.sh --bundle-sha256. The bundle holds wheels/ and two locks, every wheel pinned by
# SHA-256: requirements.lock (the guest agent: guest_agent/pyproject.toml) and analytics.lock
# (the analytics web app: workloads/analytics/pyproject.toml, which needs the agent's wheel for
# its client and the token verifier); bootstrap.sh installs each into its own venv.
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

# The analytics app: the web app's modules only (no training job, no data files, none of the
# control plane's or the lab's helpers: deploy, demo, launch, summary).
mkdir -p "$STAGE/app-src/workloads"
cp "$REPO/workloads/__init__.py" "$REPO/workloads/streams.py" "$STAGE/app-src/workloads/"
cp -R "$REPO/workloads/analytics" "$STAGE/app-src/workloads/analytics"
for name in deploy.py demo.py launch.py summary.py pyproject.toml; do
    rm -f -- "$STAGE/app-src/workloads/analytics/$name"
done
find "$STAGE/app-src" -name '__pycache__' -prune -exec rm -rf -- {} +
cp "$REPO/workloads/analytics/pyproject.toml" "$STAGE/app-src/pyproject.toml"

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$STAGE/built" "$STAGE/src" \
    "$STAGE/app-src"

# fetch DEST WHEEL: WHEEL and its pinned dependencies, as binary wheels for the VM.
fetch() {
    "$PYTHON" -m pip download --quiet --only-binary=:all: --python-version "$PYVER" \
        --platform "$PLATFORM" --platform manylinux2014_x86_64 --platform any \
        --implementation cp --find-links "$STAGE/built" --dest "$1" "$2"
}

# lock DIR: name==version --hash=sha256:… for every wheel in DIR.
lock() {
    "$PYTHON" - "$1" <<'PY'
import hashlib, pathlib, sys
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    print(f"{name.replace('_', '-')}=={version} --hash=sha256:{digest}")
PY
}

fetch "$STAGE/agent" "$(ls "$STAGE"/built/cotenant_guest_agent-*.whl)"
fetch "$STAGE/app" "$(ls "$STAGE"/built/cotenant_analytics-*.whl)"
lock "$STAGE/agent" >"$OUT/requirements.lock"
lock "$STAGE/app" >"$OUT/analytics.lock"
cp "$STAGE"/agent/*.whl "$OUT/wheels/"
cp "$STAGE"/app/*.whl "$OUT/wheels/"
# Both locks must hold for the one wheels/ folder (a name fetched twice is the same file).
lock "$OUT/wheels" >"$STAGE/bundle.lock"
if grep -vxhFf "$STAGE/bundle.lock" "$OUT/requirements.lock" "$OUT/analytics.lock" >&2; then
    echo "build-bundle: the agent and the app locks disagree on the wheels above" >&2
    exit 1
fi
tar -czf "$OUT/bundle.tar.gz" -C "$OUT" wheels requirements.lock analytics.lock
sha256sum "$OUT/bundle.tar.gz" | cut -d' ' -f1
