# shellcheck shell=bash
# Environment for every Tenancy command: source it (the Makefile and tests do).
# Pins the toolchain versions, keeps the Pulumi engine offline and puts the
# project's own tools first on PATH. Safe to source more than once.

TENANCY_ROOT="${TENANCY_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# Built toolchains and images are shared between clones of the project.
TENANCY_CACHE="${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy}"
# Per-clone state: Pulumi file backend, passphrase, run artifacts.
TENANCY_STATE="${TENANCY_STATE:-$TENANCY_ROOT/.tenancy}"

PULUMI_VERSION="3.274.1"
PULUMI_PREFIX="$TENANCY_CACHE/pulumi-v$PULUMI_VERSION"
export TENANCY_ROOT TENANCY_CACHE TENANCY_STATE PULUMI_VERSION PULUMI_PREFIX

export GOPATH="$TENANCY_CACHE/go"
export GOMODCACHE="$TENANCY_CACHE/go/pkg/mod"
export GOFLAGS="-modcacherw"

export PULUMI_HOME="$PULUMI_PREFIX/home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_DISABLE_REGISTRY_RESOLVE=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$TENANCY_STATE/pulumi}"
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE_FILE="$TENANCY_STATE/passphrase"
fi

export ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_PIPELINING=True

case ":$PATH:" in
  *":$TENANCY_ROOT/.venv/bin:"*) ;;
  *) export PATH="$TENANCY_ROOT/.venv/bin:$PULUMI_PREFIX/bin:/usr/sbin:/sbin:$PATH" ;;
esac
