import json

import pytest

from finetune_api.training import TrainerConfig
from finetune_operator import builders
from finetune_operator.config import OperatorConfig


def build(ftj, cfg):
    spec = builders.parse_spec(ftj)
    return {o["kind"]: o for o in builders.children(ftj, spec, cfg)}


def pod_spec(job):
    return job["spec"]["template"]["spec"]


def test_children_order_and_names(ftj, cfg):
    objs = builders.children(ftj, builders.parse_spec(ftj), cfg)
    assert [o["kind"] for o in objs] == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Job"]
    assert objs[-1]["metadata"]["name"] == "demo-trainer"
    assert objs[0]["metadata"]["name"] == "demo-config"
    for o in objs:
        meta = o["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["labels"]["finetune.dev/finetunejob"] == "demo"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "finetune-operator"
        assert meta["labels"]["app.kubernetes.io/name"] == "finetunejob"
        assert meta["ownerReferences"] == [{
            "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob", "name": "demo", "uid": "1111-2222",
            "controller": True, "blockOwnerDeletion": True}]


@pytest.mark.parametrize("name", ["a" * 63, "b" * 200, "x.y." + "c" * 240, "short"])
def test_names_fit_and_are_deterministic(name):
    for suffix in ("trainer", "config", "cleanup"):
        n = builders.child_name(name, suffix)
        assert len(n) <= 63
        assert n == builders.child_name(name, suffix)
        assert n.endswith("-" + suffix)
        assert n[0].isalnum()
        assert "-." not in n and ".-" not in n
    lv = builders.label_value(name)
    assert len(lv) <= 63 and lv == builders.label_value(name)
    assert lv[-1].isalnum()


def test_long_names_do_not_collide():
    a, b = "p" * 100 + "a", "p" * 100 + "b"
    assert builders.job_name(a) != builders.job_name(b)
    assert builders.label_value(a) != builders.label_value(b)


def test_job_is_restricted_pss_compliant(ftj, cfg):
    job = build(ftj, cfg)["Job"]
    ps = pod_spec(job)
    psc = ps["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 1000 and psc["runAsGroup"] == 1000 and psc["fsGroup"] == 1000
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not ps.get("hostNetwork") and not ps.get("hostPID") and not ps.get("hostIPC")
    allowed = {"configMap", "emptyDir", "projected", "secret", "downwardAPI", "persistentVolumeClaim", "csi", "ephemeral"}
    for vol in ps["volumes"]:
        assert set(vol) - {"name"} <= allowed
    for c in ps["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert not sc.get("privileged")
        assert "ports" not in c


def test_job_basics(ftj, cfg):
    job = build(ftj, cfg)["Job"]
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["suspend"] is False
    ps = pod_spec(job)
    assert ps["restartPolicy"] == "Never"
    c = ps["containers"][0]
    assert c["command"] == ["finetune-train", "--config", "/etc/finetune/config.json"]
    assert c["image"] == "trainer:test"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e for e in c["env"]}
    assert env["HOME"]["value"] == "/tmp" and env["HF_HOME"]["value"].startswith("/tmp")
    assert env["FINETUNE_STATUS_PATCH"]["value"] == "1"
    assert env["FINETUNE_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.annotations['finetune.dev/finetunejob']"
    assert env["FINETUNE_JOB_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert job["spec"]["template"]["metadata"]["annotations"]["finetune.dev/finetunejob"] == "demo"
    assert "HF_TOKEN" not in env
    assert ps["serviceAccountName"] == "demo-trainer"
    assert ps["automountServiceAccountToken"] is True
    assert "activeDeadlineSeconds" not in job["spec"] and "ttlSecondsAfterFinished" not in job["spec"]


def test_gpu_resources_selector_tolerations(ftj, cfg):
    ps = pod_spec(build(ftj, cfg)["Job"])
    res = ps["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "2" == res["limits"]["nvidia.com/gpu"]
    assert res["requests"]["cpu"] == "4" and res["requests"]["memory"] == "16Gi" == res["limits"]["memory"]
    assert "cpu" not in res["limits"]
    assert ps["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in ps["tolerations"]


def test_cpu_only_job_has_no_gpu_bits(ftj, cfg):
    ftj["spec"]["resources"] = {"gpus": 0, "cpu": "500m", "memory": "2Gi"}
    ps = pod_spec(build(ftj, cfg)["Job"])
    res = ps["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in res["requests"] and "nvidia.com/gpu" not in res["limits"]
    assert "nodeSelector" not in ps and "tolerations" not in ps


def test_user_scheduling_passthrough(ftj, cfg):
    ftj["spec"]["scheduling"] = {
        "nodeSelector": {"pool": "train"},
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "priorityClassName": "batch-low",
    }
    ftj["spec"]["podAnnotations"] = {"sim.finetune.dev/exit-code": "3"}
    ftj["spec"]["podLabels"] = {"team": "nlp"}
    job = build(ftj, cfg)["Job"]
    ps = pod_spec(job)
    assert ps["nodeSelector"] == {"pool": "train", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "spot", "operator": "Exists", "effect": "NoSchedule"} in ps["tolerations"]
    assert len(ps["tolerations"]) == 2
    assert ps["affinity"]["nodeAffinity"]
    assert ps["priorityClassName"] == "batch-low"
    tmeta = job["spec"]["template"]["metadata"]
    assert tmeta["annotations"]["sim.finetune.dev/exit-code"] == "3"
    assert tmeta["labels"]["team"] == "nlp" and tmeta["labels"]["finetune.dev/finetunejob"] == "demo"


def test_job_spec_passthrough(ftj, cfg):
    ftj["spec"].update({"activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600, "backoffLimit": 2,
                        "suspend": True, "image": "my/trainer:1"})
    job = build(ftj, cfg)["Job"]
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["suspend"] is True
    assert pod_spec(job)["containers"][0]["image"] == "my/trainer:1"


def test_kueue_queue_creates_suspended_with_label(ftj, cfg):
    ftj["spec"]["scheduling"] = {"queueName": "gpu-queue"}
    job = build(ftj, cfg)["Job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True


def test_hf_token(ftj, cfg):
    ftj["spec"]["model"] = {"source": "hf://org/model", "tokenSecretRef": {"name": "hf"}}
    env = {e["name"]: e for e in pod_spec(build(ftj, cfg)["Job"])["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}


def test_volumes_and_paths(ftj, cfg):
    ftj["spec"]["dataset"]["validationSource"] = "pvc://data/val.jsonl"
    objs = build(ftj, cfg)
    ps = pod_spec(objs["Job"])
    vols = {v["name"]: v for v in ps["volumes"]}
    mounts = {m["mountPath"]: m for m in ps["containers"][0]["volumeMounts"]}
    assert vols["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert mounts["/dev/shm"]["name"] == "shm"
    assert mounts["/tmp"]["name"] == "tmp" and vols["tmp"]["emptyDir"] == {}
    assert mounts["/etc/finetune"]["readOnly"] is True
    assert vols["config"]["configMap"]["name"] == "demo-config"
    claims = {v["persistentVolumeClaim"]["claimName"]: v for v in ps["volumes"] if "persistentVolumeClaim" in v}
    assert set(claims) == {"models", "data", "artifacts"}
    assert claims["models"]["persistentVolumeClaim"]["readOnly"] is True
    assert claims["data"]["persistentVolumeClaim"]["readOnly"] is True
    assert claims["artifacts"]["persistentVolumeClaim"]["readOnly"] is False
    assert mounts["/mnt/pvc/models"]["readOnly"] is True
    assert mounts["/mnt/pvc/artifacts"]["readOnly"] is False
    config = json.loads(objs["ConfigMap"]["data"]["config.json"])
    tc = TrainerConfig.model_validate(config)
    assert tc.model.source == "/mnt/pvc/models/smollm2"
    assert tc.dataset.source == "/mnt/pvc/data/train.jsonl"
    assert tc.dataset.validation_source == "/mnt/pvc/data/val.jsonl"
    assert tc.output.dir == "/mnt/pvc/artifacts/team-a/demo"
    assert tc.reporting.termination_message_path == "/dev/termination-log"


def test_output_path_and_shared_claim(ftj, cfg):
    ftj["spec"]["output"] = {"pvc": "data", "path": "runs/exp1", "merge": True}
    objs = build(ftj, cfg)
    ps = pod_spec(objs["Job"])
    claims = [v for v in ps["volumes"] if "persistentVolumeClaim" in v]
    assert sorted(v["persistentVolumeClaim"]["claimName"] for v in claims) == ["data", "models"]
    data = next(v for v in claims if v["persistentVolumeClaim"]["claimName"] == "data")
    assert data["persistentVolumeClaim"]["readOnly"] is False  # output claim wins: read-write
    tc = TrainerConfig.model_validate(json.loads(objs["ConfigMap"]["data"]["config.json"]))
    assert tc.output.dir == "/mnt/pvc/data/runs/exp1" and tc.output.merge is True


def test_builtin_and_absolute_sources_untouched(ftj, cfg):
    ftj["spec"]["model"] = {"source": "builtin:smollm2-135m-instruct"}
    ftj["spec"]["dataset"] = {"source": "/data/train.jsonl"}
    objs = build(ftj, cfg)
    tc = TrainerConfig.model_validate(json.loads(objs["ConfigMap"]["data"]["config.json"]))
    assert tc.model.source == "builtin:smollm2-135m-instruct"
    assert tc.dataset.source == "/data/train.jsonl"
    claims = [v for v in pod_spec(objs["Job"])["volumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in claims] == ["artifacts"]


def test_trainer_config_keeps_training_settings(ftj, cfg):
    ftj["spec"]["peft"] = {"type": "qlora", "r": 8}
    ftj["spec"]["training"] = {"maxSteps": 5, "learningRate": 0.001}
    tc = TrainerConfig.model_validate(json.loads(build(ftj, cfg)["ConfigMap"]["data"]["config.json"]))
    assert tc.peft.type == "qlora" and tc.peft.r == 8 and tc.peft.quantization is not None
    assert tc.training.max_steps == 5 and tc.training.learning_rate == 0.001


def test_role_is_scoped_to_own_status(ftj, cfg):
    objs = build(ftj, cfg)
    assert objs["Role"]["rules"] == [{"apiGroups": ["finetune.dev"], "resources": ["finetunejobs/status"],
                                      "resourceNames": ["demo"], "verbs": ["patch"]}]
    rb = objs["RoleBinding"]
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "demo-trainer"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "demo-trainer", "namespace": "team-a"}]
    assert objs["ServiceAccount"]["automountServiceAccountToken"] is False


def test_status_patch_off(ftj):
    cfg = OperatorConfig(status_patch=False)
    objs = builders.children(ftj, builders.parse_spec(ftj), cfg)
    assert [o["kind"] for o in objs] == ["ConfigMap", "Job"]
    ps = pod_spec(objs[-1])
    assert ps["automountServiceAccountToken"] is False and "serviceAccountName" not in ps
    env = {e["name"]: e for e in ps["containers"][0]["env"]}
    assert env["FINETUNE_STATUS_PATCH"]["value"] == "0"


def test_long_name_children(ftj, cfg):
    ftj["metadata"]["name"] = "n" * 120
    for o in builders.children(ftj, builders.parse_spec(ftj), cfg):
        assert len(o["metadata"]["name"]) <= 63
        assert len(o["metadata"]["labels"]["finetune.dev/finetunejob"]) <= 63
        assert o["metadata"]["annotations"]["finetune.dev/finetunejob"] == "n" * 120
    role = builders.role(ftj)
    assert role["rules"][0]["resourceNames"] == ["n" * 120]


def test_cleanup_job(ftj, cfg):
    ftj["spec"]["output"]["retention"] = "Delete"
    job = builders.cleanup_job(ftj, builders.parse_spec(ftj), cfg)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][-1] == "/mnt/pvc/artifacts/team-a/demo"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "cleanup"
    assert "ownerReferences" not in job["metadata"]
    assert c["securityContext"]["runAsNonRoot"] is True


def test_parse_pvc_source():
    assert builders.parse_pvc_source("pvc://c/a/b") == ("c", "a/b")
    assert builders.parse_pvc_source("pvc://c") == ("c", "")
    assert builders.parse_pvc_source("pvc://c/") == ("c", "")
    assert builders.parse_pvc_source("hf://x/y") is None
    assert builders.resolve_source("pvc://c") == "/mnt/pvc/c"
