#!/usr/bin/env bash
# Build the Pulumi engine (CLI + Python plugin shims) from the Go module proxy
# into $PULUMI_PREFIX. No release binaries are reachable from these machines,
# so the CLI is compiled from github.com/pulumi/pulumi/pkg/v3 at the pinned
# version. Idempotent: a stamp holding the recipe hash makes a rerun a no-op.
#
#   tools/build-pulumi.sh          build if needed, else "engine: up to date"
#   FORCE=1 tools/build-pulumi.sh  rebuild even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/env.sh
source "$here/env.sh"

stamp="$PULUMI_PREFIX/.stamp"
launcher_src="$here/pulumi-language-python"

# The launcher is a two-line shell script: keep it current on every run
# (cheap) instead of making it part of the expensive recipe.
install_launcher() {
  mkdir -p "$PULUMI_PREFIX/bin"
  if ! cmp -s "$launcher_src" "$PULUMI_PREFIX/bin/pulumi-language-python"; then
    install -m 0755 "$launcher_src" "$PULUMI_PREFIX/bin/pulumi-language-python"
  fi
}

recipe="$( { cat "${BASH_SOURCE[0]}"; echo "version=$PULUMI_VERSION"; } | sha256sum | cut -d' ' -f1)"

if [ "${FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] \
   && [ -x "$PULUMI_PREFIX/bin/pulumi" ]; then
  install_launcher
  echo "engine: up to date ($PULUMI_PREFIX)"
  exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "engine: no Go toolchain (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 1; }
# Never fetch a toolchain behind our back; set GOTOOLCHAIN=go1.27.3 explicitly if needed.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOCACHE="${GOCACHE:-$TENANCY_CACHE/go-build}"
export CGO_ENABLED=0

start=$(date +%s)
log() { echo "engine: [$(( $(date +%s) - start ))s] $*"; }

pkg="github.com/pulumi/pulumi/pkg/v3"
sdk="github.com/pulumi/pulumi/sdk/v3"
ver="v$PULUMI_VERSION"

log "$("$GO" version); building pulumi $ver into $PULUMI_PREFIX"

# 1. Probe: learn within seconds whether the proxy serves the pinned modules.
for mod in "$pkg" "$sdk"; do
  if ! out="$("$GO" mod download -json "$mod@$ver" 2>&1)"; then
    echo "engine: the Go module proxy does not serve $mod@$ver:" >&2
    echo "$out" >&2
    exit 1
  fi
done
sdk_dir="$("$GO" mod download -json "$sdk@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
pkg_dir="$("$GO" mod download -json "$pkg@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$sdk_dir/python" ] && [ -d "$pkg_dir/cmd/pulumi" ] || { echo "engine: unexpected module layout in $pkg_dir / $sdk_dir" >&2; exit 1; }

# 2. Wrapper module: pkg/v3's own go.mod replaces sdk/v3 with ../sdk, so
#    `go install pkg@version` refuses. A throwaway main module that requires
#    both at the same version and repeats pkg's non-local replaces builds the
#    same thing.
work="$TENANCY_CACHE/build/pulumi-cli"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$pkg_dir/go.mod" | head -n1)"
{
  echo "module tenancy.local/pulumi-cli"
  echo
  echo "go $go_directive"
  echo
  echo "require ("
  echo "	$pkg $ver"
  echo "	$sdk $ver"
  echo ")"
  echo
  # Single-line replaces whose target is a module (not a ../ path).
  grep -E '^replace [^ ]+( [^ ]+)? => [^./][^ ]* v[^ ]+$' "$pkg_dir/go.mod" || true
} > go.mod
log "wrapper module: $(grep -c '^replace' go.mod) replace(s) copied from pkg/v3"

# Resolve the dependency graph of ./cmd/pulumi (downloads a few hundred modules
# on a cold cache) and record go.sum entries.
"$GO" get "$pkg/cmd/pulumi@$ver"
# go get may raise the requirements; pkg and sdk must stay in lockstep.
"$GO" list -m -f '{{.Path}} {{.Version}}' "$pkg" "$sdk" | while read -r p v; do
  [ "$v" = "$ver" ] || { echo "engine: $p resolved to $v, expected $ver" >&2; exit 1; }
done
log "dependencies resolved"

# 3. Build the CLI (release flags; an empty version breaks the Automation API).
stage="$PULUMI_PREFIX/bin.new"
rm -rf "$stage"
mkdir -p "$stage"
"$GO" build -trimpath -tags osusergo,grpcnotrace \
  -ldflags "-X $sdk/go/common/version.Version=$ver" \
  -o "$stage/pulumi" "$pkg/cmd/pulumi"
log "pulumi CLI built"

# 4. Python shims shipped inside the sdk/v3 module: the dynamic-provider
#    plugin and the exec helper the language host runs programs through.
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$stage/"
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$stage/"

mkdir -p "$PULUMI_PREFIX/bin" "$PULUMI_HOME"
for f in "$stage"/*; do
  mv -f "$f" "$PULUMI_PREFIX/bin/"
done
rmdir "$stage"
install_launcher

"$PULUMI_PREFIX/bin/pulumi" version >/dev/null
echo "$recipe" > "$stamp"
log "done: $("$PULUMI_PREFIX/bin/pulumi" version), prefix $(du -sh "$PULUMI_PREFIX" | cut -f1)"
