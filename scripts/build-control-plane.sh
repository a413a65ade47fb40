#!/usr/bin/env bash
# Builds (or reuses) the real external binaries the test suite starts: kube-apiserver,
# kube-controller-manager, etcd and helm, all from their Go modules, cached outside the checkout.
#
# Usage:
#   bash scripts/build-control-plane.sh                # build what is missing, print paths
#   bash scripts/build-control-plane.sh --print-paths  # only print NAME=PATH for binaries present;
#                                                      # exit 3 if any required one is missing
#   bash scripts/build-control-plane.sh --no-controller-manager   # skip kube-controller-manager
#
# Output on stdout (one per line): KUBE_APISERVER=..., KUBE_CONTROLLER_MANAGER=..., ETCD=...,
# HELM=...; progress goes to stderr.
#
# Cache: ${GEN5NAS_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen5nas/bin}/<component>-<version>/,
# so bumping a version below builds into a new directory. The Go build cache (~/.cache/go-build)
# and module cache (~/go/pkg/mod) make rebuilds of unchanged code fast.
set -euo pipefail

KUBE_VERSION="${GEN5NAS_KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${GEN5NAS_ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${GEN5NAS_HELM_VERSION:-v3.22.0}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template_dir="$here/control-plane"
cache="${GEN5NAS_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen5nas/bin}"
kube_dir="$cache/kube-$KUBE_VERSION"
etcd_dir="$cache/etcd-$ETCD_VERSION"
helm_dir="$cache/helm-$HELM_VERSION"

mode=build
want_kcm=1
for arg in "$@"; do
  case "$arg" in
    --print-paths) mode=print ;;
    --no-controller-manager) want_kcm=0 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build-control-plane: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[build-control-plane] $*" >&2; }
die() { echo "[build-control-plane] ERROR: $*" >&2; exit 1; }

print_paths() {
  local missing=0
  if [[ -x "$kube_dir/kube-apiserver" ]]; then echo "KUBE_APISERVER=$kube_dir/kube-apiserver"
  else missing=1; fi
  if [[ -x "$kube_dir/kube-controller-manager" ]]; then
    echo "KUBE_CONTROLLER_MANAGER=$kube_dir/kube-controller-manager"
  fi
  if [[ -x "$etcd_dir/etcd" ]]; then echo "ETCD=$etcd_dir/etcd"; else missing=1; fi
  if [[ -x "$helm_dir/helm" ]]; then echo "HELM=$helm_dir/helm"; else missing=1; fi
  return $missing
}

if [[ "$mode" == print ]]; then
  print_paths || exit 3
  exit 0
fi

# ---- toolchain -------------------------------------------------------------------------------
GO="${GO:-}"
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else die "no Go toolchain found (looked for 'go' on PATH and /usr/local/go/bin/go)"; fi
fi
go_version="$("$GO" version 2>/dev/null)" || die "Go toolchain '$GO' does not run"
log "using $go_version"
# etcd and helm declare 'go 1.26.0'; never let the go command try to download a toolchain.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0
# 2 cores: one package build at a time per core, and keep the compiler's own parallelism modest.
jobs="${GEN5NAS_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
build_flags=(-p "$jobs" -trimpath)

work="$(mktemp -d "${TMPDIR:-/tmp}/gen5nas-cp-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

timed() {  # timed LABEL CMD... : runs CMD, logs its wall time
  local label="$1"; shift
  local start=$SECONDS
  log "$label ..."
  if ! "$@" >&2; then die "$label failed (see the Go output above)"; fi
  log "$label done in $((SECONDS - start))s"
}

# Installs a finished binary atomically so an interrupted build never leaves a half file behind.
# Refuses a binary whose embedded build info does not name MODULE at VERSION (guards against the
# go command silently picking another version of a module).
check_version() {  # check_version BINARY MODULE VERSION
  if ! "$GO" version -m "$1" | awk -v m="$2" -v v="$3" '($1=="dep"||$1=="mod") && $2==m && $3==v {f=1} END {exit !f}'; then
    die "$1 was not built from $2 $3: $("$GO" version -m "$1" | grep -F "$2" | head -3)"
  fi
}

install_bin() {  # install_bin SRC DEST
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp.$$" && chmod 0755 "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}

# ---- kube-apiserver / kube-controller-manager -------------------------------------------------
build_kube() {
  local targets=()
  [[ -x "$kube_dir/kube-apiserver" ]] || targets+=(kube-apiserver)
  if [[ $want_kcm == 1 && ! -x "$kube_dir/kube-controller-manager" ]]; then
    targets+=(kube-controller-manager)
  fi
  if [[ ${#targets[@]} == 0 ]]; then log "kube $KUBE_VERSION: cached in $kube_dir"; return; fi

  local mod="$work/kube"
  local staging_version="v0.${KUBE_VERSION#v1.}"
  mkdir -p "$mod"
  # The template lists every k8s.io/* staging module of k8s.io/kubernetes (copied from that
  # release's go.mod); those are not in the module zip, so each is pinned to its published tag.
  sed -e "s/@KUBE_VERSION@/$KUBE_VERSION/g" -e "s/@STAGING_VERSION@/$staging_version/g" \
    "$template_dir/kube.go.mod.in" >"$mod/go.mod"
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
EOF
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && timed "kube $KUBE_VERSION: resolving modules" "$GO" mod tidy)
  local t
  for t in "${targets[@]}"; do
    (cd "$mod" && timed "kube $KUBE_VERSION: building $t" \
      "$GO" build "${build_flags[@]}" -ldflags="$ld" -o "$work/out/$t" "k8s.io/kubernetes/cmd/$t")
    check_version "$work/out/$t" k8s.io/kubernetes "$KUBE_VERSION"
    install_bin "$work/out/$t" "$kube_dir/$t"
  done
}

# ---- etcd ------------------------------------------------------------------------------------
build_etcd() {
  if [[ -x "$etcd_dir/etcd" ]]; then log "etcd $ETCD_VERSION: cached in $etcd_dir"; return; fi
  local mod="$work/etcd"
  mkdir -p "$mod"
  # The server module's own go.mod replaces its sibling modules with relative paths, which only
  # apply inside etcd's repository; here they are required at the same published version.
  cat >"$mod/go.mod" <<EOF
module gen5nas.local/etcd-build

go 1.26.0

require (
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
)
EOF
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  (cd "$mod" && timed "etcd $ETCD_VERSION: resolving modules" "$GO" mod tidy)
  (cd "$mod" && timed "etcd $ETCD_VERSION: building etcd" \
    "$GO" build "${build_flags[@]}" -ldflags="-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3)
  check_version "$work/out/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  install_bin "$work/out/etcd" "$etcd_dir/etcd"
}

# ---- helm ------------------------------------------------------------------------------------
build_helm() {
  if [[ -x "$helm_dir/helm" ]]; then log "helm $HELM_VERSION: cached in $helm_dir"; return; fi
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  (cd "$work" && GOFLAGS="${GOFLAGS/-mod=mod/}" GOBIN="$work/helm-bin" timed \
    "helm $HELM_VERSION: building helm" \
    "$GO" install "${build_flags[@]}" -ldflags="$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  check_version "$work/helm-bin/helm" helm.sh/helm/v3 "$HELM_VERSION"
  install_bin "$work/helm-bin/helm" "$helm_dir/helm"
}

total_start=$SECONDS
build_etcd
build_helm
build_kube
log "all done in $((SECONDS - total_start))s"
print_paths || die "some binaries are still missing after the build"
