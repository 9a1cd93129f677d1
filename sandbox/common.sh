# shellcheck shell=bash
# Shared settings for the sandbox scripts. Sourced, never run.
set -euo pipefail

SANDBOX_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(dirname "$SANDBOX_DIR")

# The one name every scenario, the demo and the tests use for the node image.
SANDBOX_IMAGE=${SANDBOX_IMAGE:-localhost/gpu-node-sandbox:bookworm}
SANDBOX_SUITE=${SANDBOX_SUITE:-bookworm}
SANDBOX_MIRROR=${SANDBOX_MIRROR:-http://deb.debian.org/debian}
# Host-side state shared by all nodes: apt archive cache, image build scratch space.
SANDBOX_STATE_DIR=${SANDBOX_STATE_DIR:-/var/lib/gpu-node-sandbox}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
