"""Bad input to the operator, without a cluster: specs the administrator's policy refuses (each
naming the field and what is allowed), bad policies (the operator refuses to start, naming
GEN5NAS_POLICY and the entry), mount paths the spec model refuses (the same pattern the CRDs
carry), children the API server refuses (their message in status), and the restricted security
context every child pod gets. The same paths through the real API server with the operator
running are in test_operator_policy_e2e.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from support.operator_e2e import EXAMPLES

from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.spec.common import RuntimeSpec
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import parse_model
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas_operator import reconcile, resync
from gen5nas_operator.common.conditions import FAILED, WAITING
from gen5nas_operator.common.ensure import ChildRefused, ChildRejected, ensure
from gen5nas_operator.common.ownership import Owner
from gen5nas_operator.kinds.export.children import export_children
from gen5nas_operator.kinds.search.children import search_children
from gen5nas_operator.kinds.training.children import training_children
from gen5nas_operator.kube import Kube, refusal_message
from gen5nas_operator.policy import Policy, PolicyViolation, enforce
from gen5nas_operator.settings import Settings

SETTINGS = Settings()
LABELS: dict[str, dict[str, str]] = {
    "team-a-data": {"gen5nas.io/allowed": "true"},
    "team-b-data": {"gen5nas.io/allowed": "false", "team": "b"},
}


def _labels(claim: str) -> dict[str, str] | None:
    return LABELS.get(claim)


def _refusal(spec: dict[str, Any], settings: Settings = SETTINGS) -> str:
    with pytest.raises(PolicyViolation) as err:
        enforce(settings, spec, _labels)
    return str(err.value)


# ---- specs the default policy refuses: (spec, the field named, what is allowed) ------------
REFUSED = [
    ("other registry", {"runtime": {"image": "docker.io/evil/miner:1"}}, "spec.runtime.image",
     "ghcr.io/gen5nas/"),
    ("prefix look-alike", {"runtime": {"image": "ghcr.io/gen5nas-evil/w:1"}},
     "spec.runtime.image", "ghcr.io/gen5nas/"),
    ("repository without slash", {"runtime": {"image": "ghcr.io/gen5nas"}}, "spec.runtime.image",
     "allowedImagePrefixes"),
    ("estimator image", {"estimator": {"image": "quay.io/x/estimator:2"}},
     "spec.estimator.image", "ghcr.io/gen5nas/"),
    ("service account", {"runtime": {"serviceAccountName": "cluster-admin-sa"}},
     "spec.runtime.serviceAccountName", "gen5nas-workload"),
    ("namespace default account", {"runtime": {"serviceAccountName": "default"}},
     "spec.runtime.serviceAccountName", "allowedServiceAccounts"),
    ("another DSN Secret", {"storage": {"secretName": "payroll-db"}}, "spec.storage.secretName",
     "gen5nas-postgres"),
    ("unlisted results PVC", {"runtime": {"resultsPvc": "payroll"}}, "spec.runtime.resultsPvc",
     "gen5nas-results"),
    ("PVC labelled false", {"runtime": {"datasetPvc": "team-b-data"}}, "spec.runtime.datasetPvc",
     "gen5nas.io/allowed=true"),
    ("missing PVC", {"runtime": {"datasetPvc": "nowhere"}}, "spec.runtime.datasetPvc",
     "gen5nas-datasets"),
    ("mount outside the roots", {"runtime": {"resultsMountPath": "/mnt/results"}},
     "spec.runtime.resultsMountPath", "/data, /results"),
    ("mount at a root's look-alike", {"runtime": {"resultsMountPath": "/results2"}},
     "spec.runtime.resultsMountPath", "policy.mountRoots"),
    ("keyless toleration", {"runtime": {"tolerations": [{"operator": "Exists"}]}},
     "spec.runtime.tolerations[0]", "nvidia.com/gpu"),
    ("control-plane toleration", {"runtime": {"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists"},
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}},
     "spec.runtime.tolerations[1]", "allowedTolerations"),
    ("node selector key", {"runtime": {"nodeSelector": {"kubernetes.io/hostname": "master-0"}}},
     "spec.runtime.nodeSelector.kubernetes.io/hostname", "nvidia.com/gpu.product=*"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "allowed"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])  # fmt: skip
def test_the_default_policy_refuses_naming_field_and_allowed(
    spec: dict[str, Any], field: str, allowed: str
) -> None:
    message = _refusal(spec)
    assert message.startswith("policy: ") and f"{field}:" in message and allowed in message


def test_every_violation_is_reported_at_once() -> None:
    message = _refusal({"runtime": {"image": "x/y:1", "serviceAccountName": "root",
                                    "nodeSelector": {"a": "b"}}})  # fmt: skip
    for field in ("spec.runtime.image", "serviceAccountName", "nodeSelector.a"):
        assert field in message


ALLOWED = [
    ("nothing chosen", {}),
    ("the project's image", {"runtime": {"image": "ghcr.io/gen5nas/workload:0.2.0"}}),
    ("the operator's own image", {"runtime": {"image": SETTINGS.workload_image}}),
    ("the operator's account", {"runtime": {"serviceAccountName": "gen5nas-workload"}}),
    ("the chart's DSN Secret", {"storage": {"secretName": "gen5nas-postgres", "url": None}}),
    ("labelled PVC", {"runtime": {"datasetPvc": "team-a-data", "datasetMountPath": "/data/a"}}),
    ("GPU toleration", {"runtime": {"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}),
    ("GPU product", {"runtime": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100"}}}),
    ("a dataset mount path unused without a PVC", {"runtime": {"datasetMountPath": "/mnt/x"}}),
]  # fmt: skip


@pytest.mark.parametrize("spec", [a[1] for a in ALLOWED], ids=[a[0] for a in ALLOWED])
def test_the_default_policy_allows(spec: dict[str, Any]) -> None:
    enforce(SETTINGS, spec, _labels)


@pytest.mark.parametrize(
    "example",
    [f"{folder}{kind}" for folder in ("", "detection/")
     for kind in ("supernettraining", "nassearch", "subnetexport")],
)  # fmt: skip
def test_the_shipped_examples_meet_the_default_policy(example: str) -> None:
    doc = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    enforce(SETTINGS, doc["spec"], lambda claim: None)


def test_an_administrators_policy_narrows_and_widens() -> None:
    strict = Settings(policy=Policy.from_json(json.dumps({
        "allowedImagePrefixes": ["registry.corp/ml/"],
        "allowedServiceAccounts": ["trainer"],
        "allowedPvcs": [], "allowedPvcLabel": "",
        "allowedTolerations": [{"key": "gpu", "effect": "NoSchedule"}],
        "allowedNodeSelectors": {"pool": ["a100", "h100"]},
        "mountRoots": ["/mnt"],
    })))  # fmt: skip
    enforce(strict, {"runtime": {
        "image": "registry.corp/ml/w:1", "serviceAccountName": "trainer",
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "h100"}, "resultsMountPath": "/mnt/out",
    }}, _labels)  # fmt: skip
    refused = {
        "spec.runtime.image": {"image": "ghcr.io/gen5nas/workload:0.0.9"},
        "spec.runtime.tolerations[0]": {"tolerations": [{"key": "gpu", "effect": "NoExecute"}]},
        "spec.runtime.nodeSelector.pool": {"nodeSelector": {"pool": "t4"}},
        "spec.runtime.datasetPvc": {"datasetPvc": "team-a-data", "datasetMountPath": "/mnt/d"},
        "spec.runtime.resultsMountPath": {"resultsMountPath": "/results"},
    }
    for field, runtime in refused.items():
        message = _refusal({"runtime": {"resultsMountPath": "/mnt/r", **runtime}}, strict)
        assert f"{field}:" in message, message
    assert "pool=a100|h100" in _refusal(
        {"runtime": {"resultsMountPath": "/mnt/r", "nodeSelector": {"pool": "t4"}}}, strict
    )
    anything = Settings(
        policy=Policy(allowedImagePrefixes=["*"], allowedTolerations=[{"key": "*"}])
    )
    enforce(anything, {"runtime": {"image": "x:1", "tolerations": [{"operator": "Exists"}]}},
            _labels)  # fmt: skip


# ---- policies the operator refuses to start with -------------------------------------------
BAD_POLICIES = [
    ("not JSON", "{allowedPvcs: [x]}", "not JSON"),
    ("not an object", '["ghcr.io/"]', "JSON object"),
    ("unknown key", '{"allowedImages": ["x/"]}', "allowedImages"),
    ("prefix without boundary", '{"allowedImagePrefixes": ["ghcr.io/team"]}',
     "allowedImagePrefixes"),
    ("root as mount root", '{"mountRoots": ["/"]}', "mountRoots"),
    ("system mount root", '{"mountRoots": ["/var/lib"]}', "/var"),
    ("relative mount root", '{"mountRoots": ["data"]}', "absolute"),
    ("label without value", '{"allowedPvcLabel": "gen5nas.io/allowed"}', "key=value"),
    ("toleration without key", '{"allowedTolerations": [{"effect": "NoSchedule"}]}',
     "allowedTolerations.0.key"),
    ("selector values not a list", '{"allowedNodeSelectors": {"pool": "a100"}}',
     "allowedNodeSelectors.pool"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "why"), [b[1:] for b in BAD_POLICIES],
                         ids=[b[0] for b in BAD_POLICIES])  # fmt: skip
def test_a_bad_policy_stops_the_operator_naming_it(raw: str, why: str) -> None:
    with pytest.raises(SpecError) as err:
        Settings.from_env({"GEN5NAS_POLICY": raw})
    assert err.value.field == "GEN5NAS_POLICY" and why in str(err.value)


# ---- mount paths the spec model (and so the CRD, at admission) refuses ---------------------
@pytest.mark.parametrize(
    "path", ["/data/../etc", "data", "/data/", "//data", "/data/./x", "/.ssh", "/data/x y", "/"]
)
def test_a_mount_path_must_be_absolute_and_normalized(path: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_model(RuntimeSpec, {"datasetMountPath": path}, source="spec.runtime")
    assert err.value.field == "datasetMountPath" and "pattern" in str(err.value)


@pytest.mark.parametrize(
    ("path", "directory"),
    [("/etc", "/etc"), ("/usr/lib/python3", "/usr"), ("/opt/conda", "/opt"), ("/tmp", "/tmp"),
     ("/config/x", "/config"), ("/dev/shm", "/dev"), ("/var/run/secrets", "/var")],
)  # fmt: skip
def test_a_mount_path_must_not_cover_the_images_or_operators_directories(
    path: str, directory: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_model(RuntimeSpec, {"resultsMountPath": path}, source="spec.runtime")
    assert err.value.field == "resultsMountPath" and f"lies in {directory}" in str(err.value)
    # the operator's policy refuses it too (a spec that does not parse is InvalidSpec instead)
    assert "policy.mountRoots" not in Policy().mount_violations("f", path)[0]


# ---- children the API server refuses --------------------------------------------------------
def _status(message: str, code: int) -> bytes:
    return json.dumps({"kind": "Status", "status": "Failure", "message": message,
                       "code": code}).encode()  # fmt: skip


class RefusingKube(Kube):
    """An API server with nothing in it that refuses to create one kind (``refuse``:
    kind -> (HTTP status, body)) and creates everything else."""

    def __init__(self, refuse: dict[str, tuple[int, bytes]]) -> None:
        super().__init__(api=None)  # type: ignore[arg-type]
        self.refuse = refuse
        self.created: list[str] = []

    def _call(self, method: str, url: str, body: Any = None, **_: Any) -> Any:
        if method == "POST":
            if body["kind"] in self.refuse:
                status, data = self.refuse[body["kind"]]
                raise ApiException(status=status, reason="Refused", body=data)
            self.created.append(f"{body['kind']}/{body['metadata'].get('name')}")
            return {**body, "metadata": {**body["metadata"], "uid": "u-1"}}
        raise ApiException(status=404)


QUANTITY = (
    'Job.batch "st-train" is invalid: spec.template.spec.containers[0].resources.requests'
    '[memory]: Invalid value: "lots": quantities must match the regular expression'
)
REFUSALS = [
    (422, _status(QUANTITY, 422), ChildRejected, QUANTITY),
    (400, _status("json: cannot unmarshal string", 400), ChildRejected, "cannot unmarshal"),
    (403, _status('jobs "st-train" is forbidden: exceeded quota: gpu', 403), ChildRefused,
     "exceeded quota"),
    (429, b"", ChildRefused, "429 Refused"),
    (500, b"<html>oops</html>", ChildRefused, "500 Refused"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "body", "error", "said"), REFUSALS, ids=[str(r[0]) for r in REFUSALS]
)
def test_a_refused_child_raises_with_the_api_servers_words(
    code: int, body: bytes, error: type, said: str
) -> None:
    kube = RefusingKube({"Job": (code, body)})
    owner = Owner("SupernetTraining", "st", "ns", "u-1")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "st-train", "namespace": "ns"},
    }
    with pytest.raises(error) as err:
        ensure(kube, owner, [job])
    assert "Job st-train" in str(err.value) and said in str(err.value)
    assert refusal_message(ApiException(status=code, reason="Refused", body=body)) in str(err.value)


def _body(kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "gen5nas.io/v1alpha1", "kind": kind, "spec": spec, "status": status or {},
        "metadata": {"name": "st", "namespace": "ns", "uid": "u-1", "generation": 3},
    }  # fmt: skip


TRAINING = {"searchSpace": {"name": "mobilenetv2_tiny"}, "dataset": {"kind": "digits"}}


def test_reconcile_maps_refusals_and_violations_to_status() -> None:
    rejected = RefusingKube({"Job": (422, _status(QUANTITY, 422))})
    st = reconcile.run(
        "SupernetTraining", rejected, SETTINGS, _body("SupernetTraining", TRAINING)
    ).status
    assert (st["phase"], st["observedGeneration"]) == (FAILED, 3)
    failed = {c["type"]: c for c in st["conditions"]}["Failed"]
    assert failed["reason"] == "ChildRejected" and QUANTITY in st["message"]
    assert "ConfigMap/st-spec" in rejected.created  # what came before the Job is made

    no_roles = RefusingKube({"Role": (403, _status('roles "gen5nas-workload" is forbidden', 403))})
    st = reconcile.run(
        "SupernetTraining", no_roles, SETTINGS, _body("SupernetTraining", TRAINING)
    ).status  # the workload identity is made before the Job: its refusal waits the same way
    assert st["phase"] == WAITING and "gen5nas-workload" in st["message"]
    assert not any(c.startswith("Job/") for c in no_roles.created)

    quota = RefusingKube({"Job": (403, _status("exceeded quota: gpu", 403))})
    st = reconcile.run(
        "SupernetTraining", quota, SETTINGS, _body("SupernetTraining", TRAINING)
    ).status
    assert st["phase"] == WAITING and "exceeded quota" in st["message"]
    assert {c["type"]: c for c in st["conditions"]}["Ready"]["reason"] == "ChildRefused"

    none = RefusingKube({})
    spec = {**TRAINING, "runtime": {"image": "docker.io/evil/x:1"}}
    st = reconcile.run("SupernetTraining", none, SETTINGS, _body("SupernetTraining", spec)).status
    assert st["phase"] == FAILED and st["message"].startswith("policy: spec.runtime.image")
    assert {c["type"]: c for c in st["conditions"]}["Failed"]["reason"] == "PolicyViolation"
    assert none.created == []  # nothing is made for a refused spec

    done = {"phase": "Succeeded", "observedGeneration": 3}
    assert resync.settled(_body("SupernetTraining", spec, done))  # finished: not reconciled


def test_an_invalid_spec_is_settled_until_its_generation_changes() -> None:
    kube = RefusingKube({})
    body = _body("SupernetTraining", {**TRAINING, "runtime": {"workers": 0}})
    st = reconcile.run("SupernetTraining", kube, SETTINGS, body).status
    assert st["phase"] == FAILED and "workers" in st["message"] and kube.created == []
    assert resync.settled({**body, "status": st})
    body["metadata"]["generation"] = 4
    assert not resync.settled({**body, "status": st})


# ---- every child pod meets the restricted Pod Security Standard ------------------------------
def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    owner = Owner("SupernetTraining", "st", "ns", "u-1")
    tspec = parse_model(SupernetTrainingSpec, {**TRAINING, "runtime": {"workers": 2}})
    out = []
    for backend in (False, True):
        for m in training_children(owner, tspec, TRAINING, SETTINGS, use_pytorchjob=backend):
            if m["kind"] == "Job":
                out.append(("indexed job", m["spec"]["template"]["spec"]))
            if m["kind"] == "PyTorchJob":
                for role, replica in m["spec"]["pytorchReplicaSpecs"].items():
                    out.append((f"pytorchjob {role}", replica["template"]["spec"]))
    sraw = {"checkpoint": "/results/x", "dataset": {"kind": "digits"}}
    sspec = parse_model(NASSearchSpec, sraw)
    for m in search_children(owner, sspec, sraw, SETTINGS, "/results/x", ("pg", "dsn")):
        if m["kind"] in ("Job", "Deployment"):
            out.append((m["kind"], m["spec"]["template"]["spec"]))
    xraw = {"checkpoint": "/results/x", "arch": {"ks": [3]}}
    xspec = SubnetExportSpec.model_construct(runtime=RuntimeSpec())
    for m in export_children(owner, xspec, xraw, SETTINGS, {}):
        if m["kind"] == "Job":
            out.append(("export", m["spec"]["template"]["spec"]))
    return out


def test_every_child_pod_is_restricted() -> None:
    specs = _pod_specs()
    assert len(specs) == 6
    for what, pod in specs:
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, what
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
        assert not any("hostPath" in v for v in pod["volumes"]), what
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False and csc["privileged"] is False, what
            assert csc["capabilities"] == {"drop": ["ALL"]} and csc["readOnlyRootFilesystem"], what
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            tmp = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
            assert tmp["emptyDir"]["sizeLimit"], what
            assert {"name": "HOME", "value": "/tmp"} in c["env"], what
            assert not c.get("ports") or all(p["containerPort"] > 1024 for p in c["ports"]), what


def test_pods_without_an_account_get_no_token() -> None:
    for what, pod in _pod_specs():
        if "serviceAccountName" not in pod:
            assert pod["automountServiceAccountToken"] is False, what
        else:
            assert pod["serviceAccountName"] == "gen5nas-workload", what


def test_policy_violation_is_a_gen5nas_error() -> None:
    assert issubclass(PolicyViolation, Gen5NasError) and issubclass(ChildRejected, Gen5NasError)
