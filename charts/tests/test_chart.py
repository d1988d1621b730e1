"""charts/switchboard: lint, render, validate offline against Kubernetes schemas, refuse bad
values, and hold the invariants a production install depends on."""

import base64
import copy
import json
import pathlib
import re
import tarfile

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import (
    BAD_VALUES, CHART, CI, NAMESPACE, RELEASE, ROOT, VALUE_SETS, env_of, find, helm, one,
    pod_specs, render, template_args,
)

# The oldest Kubernetes minor the chart is validated against, and the newest.
K8S_VERSIONS = ["1.33.0", "1.35.0"]
# Kinds of CRDs kubernetes-validate has no schema for: validated against hand-written subset
# schemas (charts/tests/schemas/, closed at every level) instead; test_optional_resources
# checks their content.
SCHEMAS = pathlib.Path(__file__).parent / "schemas"
NOT_IN_KUBERNETES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): SCHEMAS / "httproute-v1.json",
}
UID = 65532


def test_value_sets_present():
    assert {"default", "ha", "minimal", "everything"} <= set(VALUE_SETS)
    assert len(BAD_VALUES) >= 10


def test_lint_strict(value_set):
    p = helm("lint", "--strict", str(CHART), "-f", str(CI / f"{value_set}-values.yaml"))
    assert "0 chart(s) failed" in p.stdout


def test_bare_chart_names_what_is_missing():
    p = helm("template", RELEASE, str(CHART), check=False)
    assert p.returncode != 0
    assert "redis.url (or redis.existingSecret) is required" in p.stderr


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_values_refused(bad):
    path = CI / "bad" / bad
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{bad}: first line must be '# expect: <part of the error>'"
    expected = first[len("# expect: "):]
    p = helm(*template_args(str(path)), check=False)
    assert p.returncode != 0, f"{bad} was accepted:\n{p.stdout[:2000]}"
    assert expected in p.stderr, f"{bad}: error does not mention {expected!r}:\n{p.stderr}"
    if "schema" in p.stderr:
        lint = helm("lint", "--strict", str(CHART), "-f", str(path), check=False)
        assert lint.returncode != 0, f"helm lint --strict accepted {bad}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strict(value_set, version, capsys):
    validated, skipped = 0, []
    for d in render(value_set):
        subset = NOT_IN_KUBERNETES.get((d["apiVersion"], d["kind"]))
        if subset:
            errors = list(jsonschema.Draft7Validator(json.loads(subset.read_text())).iter_errors(d))
            assert not errors, f"{d['kind']}/{d['metadata']['name']}: {[(e.message, list(e.path)) for e in errors]}"
            skipped.append(f"{d['kind']}/{d['metadata']['name']}")
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{d['kind']}/{d['metadata']['name']} invalid for Kubernetes {version}: {e.message} at {list(e.path)}")
        validated += 1
    assert validated >= 3  # minimal: CRD, Deployment, Service
    if skipped and version == K8S_VERSIONS[0]:
        with capsys.disabled():
            print(f"\n  note: {value_set}: kubernetes-validate has no schema for {', '.join(skipped)}: "
                  "validated against the hand-written subsets in charts/tests/schemas/ instead")


def test_subset_schemas_are_closed():
    """A misspelt field in the HTTPRoute or ServiceMonitor template would be caught."""
    docs = render("everything")
    for kind, field in (("HTTPRoute", "parentRef"), ("ServiceMonitor", "endpoint")):
        d = copy.deepcopy(one(docs, kind))
        d["spec"][field] = []
        schema = json.loads(NOT_IN_KUBERNETES[(d["apiVersion"], kind)].read_text())
        assert list(jsonschema.Draft7Validator(schema).iter_errors(d)), kind
        d = copy.deepcopy(one(docs, kind))
        jsonschema.validate(d, schema)


def test_validator_is_strict():
    """The validation above would catch an unknown field (a typo in a template)."""
    dep = copy.deepcopy(one(render("default"), "Deployment", "-edge"))
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSIONS[0], strict=True)


def test_every_resource_is_namespaced_and_labelled(value_set):
    for d in render(value_set):
        if d["kind"] == "CustomResourceDefinition":
            continue
        assert d["metadata"]["namespace"] == NAMESPACE, d["metadata"]["name"]
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "switchboard"
        assert len(d["metadata"]["name"]) <= 63


def test_no_cluster_scoped_rbac(value_set):
    kinds = {d["kind"] for d in render(value_set)}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}


# --- the edge -------------------------------------------------------------------------------

def edge(docs):
    dep = one(docs, "Deployment", "-edge")
    return dep, dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("sets", [(), ("edge.drainSeconds=120",), ("edge.preStopSleepSeconds=0", "edge.drainSeconds=0"),
                                  ("edge.preStopSleepSeconds=30", "edge.terminationMarginSeconds=1")])
def test_grace_period_covers_prestop_and_drain(value_set, sets):
    _, spec, c = edge(render(value_set, sets))
    if "edge.preStopSleepSeconds=0" in sets:
        assert "lifecycle" not in c
        sleep = 0
    else:
        assert set(c["lifecycle"]["preStop"]) == {"sleep"}, "a static image has no shell: use the native sleep"
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep > 0
    drain = int(env_of(c)["SWITCHBOARD_DRAIN_SECONDS"]["value"])
    assert spec["terminationGracePeriodSeconds"] >= sleep + drain + 1


def test_grace_period_arithmetic():
    _, spec, c = edge(render("ha"))
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 10
    assert env_of(c)["SWITCHBOARD_DRAIN_SECONDS"]["value"] == "60"
    assert spec["terminationGracePeriodSeconds"] == 10 + 60 + 15


def test_edge_probes_and_port(value_set):
    _, _, c = edge(render(value_set))
    assert c["args"] == ["edge"]
    assert env_of(c)["SWITCHBOARD_EDGE_ADDR"]["value"] == "0.0.0.0:4000"
    assert c["ports"] == [{"name": "http", "containerPort": 4000, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Liveness must not fail while a drain answers /readyz with 503.
    assert c["livenessProbe"]["httpGet"]["path"] != "/readyz"


def test_rolling_update_never_drops_capacity(value_set):
    dep, _, _ = edge(render(value_set))
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_topology_spread(value_set):
    dep, spec, _ = edge(render(value_set))
    if value_set == "minimal":
        assert "topologySpreadConstraints" not in spec
        return
    tsc = spec["topologySpreadConstraints"]
    assert {t["topologyKey"] for t in tsc} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for t in tsc:
        assert t["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    if value_set == "ha":
        assert {t["whenUnsatisfiable"] for t in tsc} == {"DoNotSchedule"}


def test_replicas_hpa_and_pdb():
    dep, _, _ = edge(render("default"))
    assert dep["spec"]["replicas"] == 2
    assert not find(render("default"), "HorizontalPodAutoscaler")
    pdb = one(render("default"), "PodDisruptionBudget", "-edge")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]

    ha = render("ha")
    dep, _, _ = edge(ha)
    assert "replicas" not in dep["spec"], "the HPA owns replicas"
    hpa = one(ha, "HorizontalPodAutoscaler", "-edge")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "switchboard_connections"
    assert metrics["Pods"]["pods"]["target"] == {"type": "AverageValue", "averageValue": "8000"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    pdb = one(ha, "PodDisruptionBudget", "-edge")
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]

    assert not find(render("minimal"), "PodDisruptionBudget")
    assert edge(render("minimal"))[0]["spec"]["replicas"] == 1


def test_services_select_their_pods(value_set):
    docs = render(value_set)
    deployments = {d["metadata"]["name"]: d for d in find(docs, "Deployment")}
    for svc in find(docs, "Service"):
        dep = deployments[svc["metadata"]["name"]]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
        ports = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


def test_edge_service_affinity_for_polling():
    svc = one(render("default"), "Service", "-edge")
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["spec"]["ports"][0]["port"] == 4000
    assert one(render("minimal"), "Service", "-edge")["spec"]["sessionAffinity"] == "None"
    lb = one(render("ha"), "Service", "-edge")["spec"]
    assert lb["type"] == "LoadBalancer" and lb["externalTrafficPolicy"] == "Local"


# --- security -------------------------------------------------------------------------------

def test_security_context(value_set):
    specs = list(pod_specs(render(value_set)))
    assert specs
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == UID, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
            assert sc.get("privileged", False) is False
            assert "add" not in sc["capabilities"]
            assert not c.get("hostPort") and not spec.get("hostNetwork")


def test_only_the_operator_mounts_an_api_token(value_set):
    for name, spec in pod_specs(render(value_set)):
        assert spec["automountServiceAccountToken"] is name.endswith("-operator"), name


def test_images_pinned(value_set):
    for name, spec in pod_specs(render(value_set)):
        for c in spec["containers"]:
            image = c["image"]
            assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", image.split("/")[-1]), image
            assert not image.endswith(":latest"), image
            assert c["imagePullPolicy"] in ("IfNotPresent", "Always", "Never")
    dep, _, c = edge(render("ha"))
    assert c["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


SENSITIVE = re.compile(r"PASSWORD|TOKEN|SECRET|SEED|CREDENTIAL|API_KEY")


def test_no_secret_value_in_plain_env(value_set):
    for name, spec in pod_specs(render(value_set)):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if SENSITIVE.search(e["name"]):
                    assert "value" not in e, f"{name}: {e['name']} in plain text"
                    assert "secretKeyRef" in e["valueFrom"], f"{name}: {e['name']} not from a Secret"
                if e["name"] == "SWITCHBOARD_REDIS_URL" and "value" in e:
                    userinfo = re.match(r"^redis(-cluster)?://([^/@]*)@", e["value"])
                    assert not userinfo or userinfo.group(2) == ":$(SWITCHBOARD_REDIS_PASSWORD)", e["value"]


def test_credentials_from_existing_secrets():
    _, _, c = edge(render("ha"))
    env = env_of(c)
    assert env["SWITCHBOARD_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "switchboard-redis", "key": "url"}
    assert env["SWITCHBOARD_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "switchboard-nats", "key": "password"}
    assert env["SWITCHBOARD_NATS_USER"]["value"] == "switchboard"
    assert env["SWITCHBOARD_NATS_TLS_REQUIRED"]["value"] == "true"
    ca = env["SWITCHBOARD_NATS_CA_FILE"]["value"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "nats-ca")
    assert ca == mount["mountPath"] + "/ca.crt"

    _, _, c = edge(render("everything"))
    env = env_of(c)
    names = [e["name"] for e in c["env"]]
    # The password is defined before the URL that refers to it (Kubernetes expands $(VAR) in order).
    assert names.index("SWITCHBOARD_REDIS_PASSWORD") < names.index("SWITCHBOARD_REDIS_URL")
    assert env["SWITCHBOARD_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis", "key": "redis-password"}
    assert env["SWITCHBOARD_REDIS_URL"]["value"] == "redis://:$(SWITCHBOARD_REDIS_PASSWORD)@redis-master.data.svc:6379"
    assert env["SWITCHBOARD_NATS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "nats-auth", "key": "token"}

    _, _, c = edge(render("default"))
    env = env_of(c)
    assert env["SWITCHBOARD_REDIS_URL"]["value"] == "redis://redis-master:6379"
    assert env["SWITCHBOARD_NATS_URL"]["value"] == "nats://nats:4222"
    assert not {"SWITCHBOARD_NATS_PASSWORD", "SWITCHBOARD_NATS_TOKEN", "SWITCHBOARD_HISTORY_IN_MEMORY"} & env.keys()


def test_every_role_gets_the_same_backends(value_set):
    docs = render(value_set)
    backends = set()
    for dep in find(docs, "Deployment"):
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        backends.add(yaml.safe_dump({k: v for k, v in env.items() if k.startswith(("SWITCHBOARD_REDIS", "SWITCHBOARD_NATS"))}))
    assert len(backends) == 1


# --- admin token ----------------------------------------------------------------------------

def admin(docs):
    dep = one(docs, "Deployment", "-admin")
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


def test_admin_token_from_generated_secret():
    docs = render("default")
    dep, c = admin(docs)
    ref = env_of(c)["SWITCHBOARD_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = one(docs, "Secret", "-admin-token")
    assert ref == {"name": secret["metadata"]["name"], "key": "admin-token"}
    token = base64.b64decode(secret["data"]["admin-token"]).decode()
    assert token.startswith("sba_") and len(token) >= 16 + 4
    assert c["args"] == ["admin"]
    assert env_of(c)["SWITCHBOARD_ADMIN_ADDR"]["value"] == "0.0.0.0:4001"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["ports"][0]["containerPort"] == 4001
    svc = one(docs, "Service", "-admin")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 4001


def test_admin_token_from_existing_secret():
    docs = render("ha")
    _, c = admin(docs)
    assert env_of(c)["SWITCHBOARD_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "switchboard-admin", "key": "token"}
    assert not find(docs, "Secret"), "an existing Secret is used: the chart makes none"


def test_generated_token_kept_by_lookup():
    text = (CHART / "templates" / "admin-token-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text


def test_minimal_has_edges_only():
    docs = render("minimal")
    assert [d["metadata"]["name"] for d in find(docs, "Deployment")] == ["sb-switchboard-edge"]
    assert not find(docs, "Secret") and not find(docs, "Role") and not find(docs, "ServiceAccount")
    assert edge(docs)[1]["serviceAccountName"] == "default"
    assert not [d for d in docs if d["kind"] == "Pod"]


# --- operator and RBAC ----------------------------------------------------------------------

LEAST_PRIVILEGE = {
    ("switchboard.dev", "tenants"): {"get", "list", "watch", "patch", "update"},
    ("switchboard.dev", "tenants/status"): {"patch", "update"},
    ("switchboard.dev", "tenants/finalizers"): {"update"},
    ("", "secrets"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


@pytest.mark.parametrize("value_set_name", ["default", "ha", "everything"])
def test_rbac_is_exactly_least_privilege(value_set_name):
    docs = render(value_set_name)
    role = one(docs, "Role", "-operator")
    got = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs needed"
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                got.setdefault((group, res), set()).update(rule["verbs"])
    assert got == LEAST_PRIVILEGE
    flat = [x for r in role["rules"] for k in ("apiGroups", "resources", "verbs") for x in r[k]]
    assert "*" not in flat

    binding = one(docs, "RoleBinding", "-operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    dep = one(docs, "Deployment", "-operator")
    spec = dep["spec"]["template"]["spec"]
    sa = one(docs, "ServiceAccount", "-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    c = spec["containers"][0]
    assert c["args"][0] == "operator"
    assert env_of(c)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # The edges' and admins' ServiceAccount is not bound to anything.
    assert edge(docs)[1]["serviceAccountName"] != sa["metadata"]["name"]


@pytest.mark.parametrize("value_set_name", ["default", "ha", "everything"])
def test_operator_probes_use_its_health_endpoints(value_set_name):
    # `switchboard operator` serves /healthz and /readyz on SWITCHBOARD_HEALTH_ADDR; the
    # probes reach them through the named port, whatever healthPort is.
    values = yaml.safe_load((CI / f"{value_set_name}-values.yaml").read_text()) or {}
    port = values.get("operator", {}).get("healthPort", 4002)
    dep = one(render(value_set_name), "Deployment", "-operator")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"] == [{"name": "health", "containerPort": port, "protocol": "TCP"}]
    assert env_of(c)["SWITCHBOARD_HEALTH_ADDR"]["value"] == f"0.0.0.0:{port}"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Liveness never asks readiness's question: an API server outage must not restart it.
    assert c["livenessProbe"]["httpGet"]["path"] != "/readyz"
    timing = values.get("operator", {}).get("livenessProbe", {})
    for k, v in timing.items():
        assert c["livenessProbe"][k] == v


def test_operator_probe_must_be_timing_only():
    # The probe's handler is the chart's: a values file cannot swap it for another one.
    p = helm(*template_args(str(CI / "default-values.yaml"), sets=("operator.livenessProbe.tcpSocket.port=1",)),
             check=False)
    assert p.returncode != 0 and "livenessProbe" in p.stderr, p.stderr


def test_crd_placeholder():
    crds = find(render("default"), "CustomResourceDefinition")
    assert len(crds) == 1
    crd = crds[0]
    assert crd["metadata"]["name"] == "tenants.switchboard.dev"
    spec = crd["spec"]
    assert spec["group"] == "switchboard.dev" and spec["scope"] == "Namespaced"
    assert (spec["names"]["kind"], spec["names"]["plural"]) == ("Tenant", "tenants")
    [v] = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
    assert v["served"] and v["storage"] and v["subresources"]["status"] == {}
    props = v["schema"]["openAPIV3Schema"]["properties"]
    assert {"spec", "status"} <= props.keys()


# --- optional resources ---------------------------------------------------------------------

OPTIONAL = {"ServiceMonitor", "NetworkPolicy", "Ingress", "HTTPRoute"}


def test_optional_resources_off_by_default():
    assert not {d["kind"] for d in render("default")} & OPTIONAL


def test_optional_resources():
    docs = render("everything")
    assert OPTIONAL <= {d["kind"] for d in docs}
    edge_svc = one(docs, "Service", "-edge")

    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    scraped = [s for s in find(docs, "Service") if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert sorted(s["metadata"]["name"] for s in scraped) == ["sb-switchboard-admin", "sb-switchboard-edge"]

    ing = one(docs, "Ingress")
    a = ing["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert a["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert a["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert a["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ing["spec"]["ingressClassName"] == "nginx"
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert {p["path"] for p in paths} == {"/socket.io/", "/v1/tickets"}
    assert {p["backend"]["service"]["name"] for p in paths} == {edge_svc["metadata"]["name"]}

    route = one(docs, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway", "sectionName": "https"}]
    [rule] = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": edge_svc["metadata"]["name"], "port": 4000}]
    assert {m["path"]["value"] for m in rule["matches"]} == {"/socket.io/", "/v1/tickets"}
    assert rule["sessionPersistence"] == {"sessionName": "sb_edge", "type": "Cookie"}
    assert rule["timeouts"] == {"request": "0s"}
    assert set(rule) <= {"matches", "backendRefs", "timeouts", "sessionPersistence", "filters"}


def egress_ports(policy):
    return {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def test_network_policy_edges_reach_only_backends_and_dns():
    docs = render("everything")
    np = one(docs, "NetworkPolicy", "-edge")
    dep, _, _ = edge(docs)
    assert np["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert np["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert egress_ports(np) == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (4222, "TCP"), (443, "TCP")}
    backend = next(r for r in np["spec"]["egress"] if (6379, "TCP") in {(p["port"], p["protocol"]) for p in r["ports"]})
    assert len(backend["to"]) == 2
    for rule in np["spec"]["egress"]:
        assert rule.get("ports"), "every egress rule is limited to ports"

    without_https = render("everything", ("networkPolicy.allowHttpsEgress=false",))
    assert egress_ports(one(without_https, "NetworkPolicy", "-edge")) == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (4222, "TCP")}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert np["spec"]["ingress"][1] == {"ports": [{"port": "http", "protocol": "TCP"}], "from": [monitoring]}
    adm = one(docs, "NetworkPolicy", "-admin")
    assert adm["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert adm["spec"]["ingress"][0]["from"] == [{"podSelector": {}}, monitoring]
    assert egress_ports(adm) == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (4222, "TCP")}


def test_ingress_cookie_secure_only_with_tls():
    a = one(render("everything"), "Ingress")["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/session-cookie-secure"] == "true"
    assert a["nginx.ingress.kubernetes.io/session-cookie-samesite"] == "None"
    plain = render("everything", ("ingress.tls=null",))
    a = one(plain, "Ingress")["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/session-cookie-secure" not in a
    assert a["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_ingress_without_nginx_annotations():
    docs = render("everything", ("ingress.nginx=false",))
    a = one(docs, "Ingress")["metadata"]["annotations"]
    assert not [k for k in a if k.startswith("nginx.ingress.kubernetes.io/")]


# --- helm test and NOTES --------------------------------------------------------------------

def test_helm_test_hook_connects_through_the_service():
    docs = render("default")
    [pod] = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    svc = one(docs, "Service", "-edge")["metadata"]["name"]
    assert f"http://{svc}.{NAMESPACE}.svc:4000" in script
    assert "/readyz" in script and "/socket.io/?EIO=4&transport=polling" in script
    assert "'0{'*" in script, "expects an Engine.IO open packet"
    assert "44$ns," in script, "with ClientIP affinity the CONNECT is checked too"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_tell_how_to_connect():
    p = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
             "-f", str(CI / "default-values.yaml"))
    notes = p.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{RELEASE}-switchboard-edge 4000:4000" in notes
    assert 'io("http://127.0.0.1:4000/<tenant>"' in notes
    assert f"get secret {RELEASE}-switchboard-admin-token" in notes
    assert "kind: Tenant" in notes and "apiVersion: switchboard.dev/v1alpha1" in notes
    assert "JetStream" in notes


# --- packaging and docs ---------------------------------------------------------------------

def test_kube_version_floor():
    ok = helm(*template_args(str(CI / "default-values.yaml")), "--kube-version", "1.30.0", check=False)
    assert ok.returncode == 0, ok.stderr
    old = helm(*template_args(str(CI / "default-values.yaml")), "--kube-version", "1.29.0", check=False)
    assert old.returncode != 0 and "kubeVersion" in old.stderr


def test_package_leaves_test_values_out(tmp_path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    [tgz] = tmp_path.glob("switchboard-*.tgz")
    names = tarfile.open(tgz).getnames()
    assert "switchboard/values.schema.json" in names and "switchboard/crds/tenants.switchboard.dev.yaml" in names
    assert not [n for n in names if n.startswith("switchboard/ci/")]


def readme_tenant():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Install on Kubernetes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    docs = [d for b in blocks for d in yaml.safe_load_all(b) if d]
    return section, docs


def test_readme_install_and_tenant_example():
    section, docs = readme_tenant()
    assert "helm install sb charts/switchboard" in section
    assert "--set redis.url=" in section and "--set nats.url=" in section
    assert "sb-switchboard-admin-token" in section
    [tenant] = [d for d in docs if d.get("kind") == "Tenant"]
    assert tenant["apiVersion"] == "switchboard.dev/v1alpha1"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", tenant["metadata"]["name"])
    spec = tenant["spec"]
    assert set(spec) == {"name", "policy", "keys"}
    assert "allowedOrigins" in spec["policy"] and "credentialSources" in spec["policy"]
    secret_refs = [k for k in spec["keys"] if "secretRef" in k]
    pem_refs = [k for k in spec["keys"] if "publicKeySecretRef" in k]
    jwks = [k for k in spec["keys"] if "jwksUrl" in k]
    assert secret_refs and pem_refs and jwks
    assert secret_refs[0]["alg"] == "HS256" and pem_refs[0]["alg"] == "RS256"
    [secret] = [d for d in docs if d.get("kind") == "Secret"]
    for k in secret_refs + pem_refs:
        ref = k.get("secretRef") or k.get("publicKeySecretRef")
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # The CRD generated from the operator's types accepts it, and names every field it
    # uses (the API server would silently prune an unknown one).
    crd = one(render("default"), "CustomResourceDefinition")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(tenant, schema)
    spec_schema = schema["properties"]["spec"]["properties"]
    assert set(spec) <= set(spec_schema)
    assert set(spec["policy"]) <= set(spec_schema["policy"]["properties"]), "policy fields the CRD knows"
    key_fields = set(spec_schema["keys"]["items"].get("properties", {}))
    for k in spec["keys"]:
        assert set(k) <= key_fields, f"key fields the CRD knows: {sorted(set(k) - key_fields)}"


def test_notes_tenant_example_uses_the_readme_names():
    _, docs = readme_tenant()
    [tenant] = [d for d in docs if d.get("kind") == "Tenant"]
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    block = notes.split("apply -f - <<'YAML'\n", 1)[1].split("YAML\n", 1)[0]
    example = yaml.safe_load("\n".join(l[5:] for l in block.splitlines()))
    assert example["apiVersion"] == tenant["apiVersion"] and example["kind"] == "Tenant"
    assert set(example["spec"]) <= set(tenant["spec"])
    assert set(example["spec"]["policy"]) <= set(tenant["spec"]["policy"])
    assert set(example["spec"]["keys"][0]) == set(tenant["spec"]["keys"][0])


DASHBOARD = CHART / "dashboards" / "switchboard.json"


def test_dashboard_configmap_ships_the_dashboard():
    cm = one(render("everything"), "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["switchboard.json"])
    assert shipped == json.loads(DASHBOARD.read_text())
    assert not find(render("default"), "ConfigMap", "-dashboard"), "off by default"


# That every metric the dashboard queries exists is tested where the metrics are defined:
# services/telemetry (`the_dashboard_queries_metrics_that_exist`).
