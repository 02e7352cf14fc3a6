import json

import pytest

from finetune_api import runconfig
from finetune_api.training import TrainerConfig
from finetune_operator import builders
from finetune_operator.config import OperatorConfig


def children(ftj, cfg):
    """Everything the operator creates for a run, in creation order (the Job last)."""
    spec = builders.parse_spec(ftj)
    return [*builders.pod_prerequisites(ftj, spec, cfg), builders.job(ftj, spec, cfg)]


def build(ftj, cfg):
    return {o["kind"]: o for o in children(ftj, cfg)}


def pod_spec(job):
    return job["spec"]["template"]["spec"]


def test_children_names_labels_and_owner(ftj, cfg):
    objs = children(ftj, cfg)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ConfigMap", "demo-config"),
        ("ServiceAccount", "demo-trainer"),
        ("RoleBinding", "demo-trainer"),
        ("Job", "demo-trainer"),
    ]
    for o in objs:
        meta = o["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["labels"]["finetune.dev/finetunejob"] == "demo"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "finetune-operator"
        assert meta["labels"]["app.kubernetes.io/name"] == "finetunejob"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "finetune.dev/v1alpha1",
                "kind": "FineTuneJob",
                "name": "demo",
                "uid": "1111-2222",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_the_trainer_is_bound_to_the_fixed_cluster_role_only(ftj, cfg):
    binding = build(ftj, cfg)["RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "finetune-operator-trainer",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "demo-trainer", "namespace": "team-a"}]
    assert "Role" not in build(ftj, cfg)


def test_names_of_at_most_52_characters_give_children_within_63(ftj, cfg):
    ftj["metadata"]["name"] = "n" * 52
    for o in children(ftj, cfg):
        assert len(o["metadata"]["name"]) <= 63
    assert len(builders.cleanup_job_name("n" * 52)) <= 63
    ftj["metadata"]["name"] = "n" * 53
    with pytest.raises(builders.InvalidSpec, match="metadata.name must be at most 52 characters"):
        builders.parse_spec(ftj)


def test_dry_run_pod_is_the_jobs_pod(ftj, cfg):
    job = build(ftj, cfg)["Job"]
    pod = builders.dry_run_pod(job)
    assert pod["spec"] == job["spec"]["template"]["spec"]
    assert pod["metadata"]["labels"] == job["spec"]["template"]["metadata"]["labels"]


def test_job_is_restricted_pss_compliant(ftj, cfg):
    job = build(ftj, cfg)["Job"]
    ps = pod_spec(job)
    psc = ps["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 1000 and psc["runAsGroup"] == 1000 and psc["fsGroup"] == 1000
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not ps.get("hostNetwork") and not ps.get("hostPID") and not ps.get("hostIPC")
    allowed = {
        "configMap",
        "emptyDir",
        "projected",
        "secret",
        "downwardAPI",
        "persistentVolumeClaim",
        "csi",
        "ephemeral",
    }
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
    assert (
        env["FINETUNE_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.annotations['finetune.dev/finetunejob']"
    )
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
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
                }
            }
        },
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
    ftj["spec"].update(
        {
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 600,
            "backoffLimit": 2,
            "suspend": True,
            "image": "my/trainer:1",
        }
    )
    job = build(ftj, cfg)["Job"]
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert "ttlSecondsAfterFinished" not in job["spec"]  # set by the operator once the result is recorded
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


def test_the_trainer_service_account_does_not_mount_a_token_by_default(ftj, cfg):
    assert build(ftj, cfg)["ServiceAccount"]["automountServiceAccountToken"] is False  # the Job's pod opts in


def test_status_patch_off_keeps_the_trainers_identity(ftj):
    """Without progress reports the trainer still has its own ServiceAccount and token: it reads its
    FineTuneJob with them to check its config."""
    cfg = OperatorConfig(status_patch=False)
    spec = builders.parse_spec(ftj)
    kinds = [o["kind"] for o in builders.pod_prerequisites(ftj, spec, cfg)]
    assert kinds == ["ConfigMap", "ServiceAccount", "RoleBinding"]
    ps = pod_spec(builders.job(ftj, spec, cfg))
    assert ps["automountServiceAccountToken"] is True and ps["serviceAccountName"] == "demo-trainer"
    env = {e["name"]: e for e in ps["containers"][0]["env"]}
    assert env["FINETUNE_STATUS_PATCH"]["value"] == "0"


def test_the_trainer_pods_stay_within_the_contract(ftj, cfg):
    """Every container the operator builds is what the chart's policy lets its token create."""
    from finetune_api import contract

    ftj["spec"]["model"]["tokenSecretRef"] = {"name": "hf"}
    spec = builders.parse_spec(ftj)
    for job in (builders.job(ftj, spec, cfg), builders.cleanup_job(ftj, spec, cfg)):
        (c,) = pod_spec(job)["containers"]
        shapes = [s for s in contract.COMMANDS if len(s) == len(c["command"])]
        assert any(
            all(want in (a, contract.ANY_ARGUMENT) for a, want in zip(c["command"], s, strict=True)) for s in shapes
        )
        names = {e["name"] for e in c["env"]}
        assert set(contract.REQUIRED_ENV) <= names
        for e in c["env"]:
            source = e.get("valueFrom") or {}
            if "secretKeyRef" in source:
                assert e["name"] in contract.SECRET_ENV
            elif "fieldRef" in source:
                assert contract.FIELD_ENV[e["name"]] == source["fieldRef"]["fieldPath"]
            else:
                assert e["name"] in contract.LITERAL_ENV, e["name"]


def test_cleanup_job(ftj, cfg):
    ftj["spec"]["output"]["retention"] = "Delete"
    job = builders.cleanup_job(ftj, builders.parse_spec(ftj), cfg)
    ftj["spec"]["image"] = "tenant/custom:1"
    job = builders.cleanup_job(ftj, builders.parse_spec(ftj), cfg)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == [
        "finetune-train",
        "cleanup",
        "--output",
        "/mnt/pvc/artifacts/team-a/demo",
        "--run-id",
        "1111-2222",
    ]
    assert c["image"] == "trainer:test"  # the operator's image, never the tenant's
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "cleanup"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1111-2222"
    assert job["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is False
    assert c["securityContext"]["runAsNonRoot"] is True
    ps = job["spec"]["template"]["spec"]
    assert ps["serviceAccountName"] == "demo-trainer" and ps["automountServiceAccountToken"] is True


def test_parse_pvc_source():
    assert runconfig.parse_pvc_source("pvc://c/a/b") == ("c", "a/b")
    assert runconfig.parse_pvc_source("pvc://c") == ("c", "")
    assert runconfig.parse_pvc_source("pvc://c/") == ("c", "")
    assert runconfig.parse_pvc_source("hf://x/y") is None
    assert runconfig.resolve_source("pvc://c") == "/mnt/pvc/c"


def test_trainer_config_carries_the_specs_own_locations_and_serving(ftj, cfg):
    ftj["spec"]["dataset"]["validationSource"] = "pvc://data/eval.jsonl"
    ftj["spec"]["serving"] = {"runtimes": ["vllm"], "replicas": 2, "maxLoraRank": 32}
    tc = TrainerConfig.model_validate(json.loads(build(ftj, cfg)["ConfigMap"]["data"]["config.json"]))
    assert tc.model.source == "/mnt/pvc/models/smollm2"  # what the trainer reads
    assert tc.origin is not None
    assert (tc.origin.model, tc.origin.dataset, tc.origin.validation_dataset) == (
        "pvc://models/smollm2",
        "pvc://data/train.jsonl",
        "pvc://data/eval.jsonl",
    )
    assert tc.origin.output == "pvc://artifacts/team-a/demo" and tc.origin.name == "demo"
    assert tc.origin.output_access_modes is None  # read only for several nodes or replicas
    assert [r.value for r in tc.serving.runtimes or []] == ["vllm"]
    assert (tc.serving.replicas, tc.serving.max_lora_rank) == (2, 32)


def test_trainer_config_passes_the_output_claims_access_modes(ftj):
    spec = builders.parse_spec(ftj)
    tc = runconfig.trainer_config(spec, "team-a", "demo", "uid-1", output_access_modes=["ReadWriteMany"])
    assert tc.origin is not None and tc.origin.output_access_modes == ["ReadWriteMany"]


def test_the_gpu_memory_of_the_product_reaches_the_trainer(ftj, cfg):
    """With the smallest GPU of the asked-for product known, the trainer checks its plan against it."""
    spec = builders.parse_spec(ftj)  # 2 GPUs of NVIDIA-A100-SXM4-80GB
    env = {
        e["name"]: e.get("value") for e in pod_spec(builders.job(ftj, spec, cfg, 81920 * 2**20))["containers"][0]["env"]
    }
    assert env["FINETUNE_GPU_MEMORY_BYTES"] == str(81920 * 2**20) and env["FINETUNE_GPUS"] == "2"
    plain = {e["name"] for e in pod_spec(builders.job(ftj, spec, cfg))["containers"][0]["env"]}
    assert "FINETUNE_GPU_MEMORY_BYTES" not in plain
