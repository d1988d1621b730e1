"""Shared fixtures of the chart tests: the helm binary and rendered value sets.

HELM names the helm binary (scripts/chart-test.sh sets it); the chart is rendered as release
`sb` in namespace `switchboard`, with the CRDs, once per value set and test session.
"""

import functools
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "switchboard"
CI = CHART / "ci"
VALUE_SETS = sorted(p.name[: -len("-values.yaml")] for p in CI.glob("*-values.yaml"))
BAD_VALUES = sorted(p.name for p in (CI / "bad").glob("*.yaml"))
RELEASE = "sb"
NAMESPACE = "switchboard"


def helm_bin() -> str:
    helm = os.environ.get("HELM") or shutil.which("helm")
    if not helm:
        pytest.fail("no helm binary: run scripts/chart-test.sh (it sets HELM)")
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def template_args(*values: str, sets: tuple = ()) -> list:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds"]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return args


@functools.lru_cache(maxsize=None)
def render(value_set: str, sets: tuple = ()) -> tuple:
    """The manifests of one value set (ci/<name>-values.yaml), as a tuple of dicts."""
    p = helm(*template_args(str(CI / f"{value_set}-values.yaml"), sets=sets))
    return tuple(d for d in yaml.safe_load_all(p.stdout) if d)


def find(docs, kind: str, name_suffix: str = "") -> list:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def one(docs, kind: str, name_suffix: str = "") -> dict:
    found = find(docs, kind, name_suffix)
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_specs(docs):
    """(name, pod spec) of every Deployment and bare Pod."""
    for d in docs:
        if d["kind"] == "Deployment":
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d["metadata"]["name"], d["spec"]


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(params=VALUE_SETS)
def value_set(request):
    return request.param
