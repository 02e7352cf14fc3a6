"""End to end: the operator runs a FineTuneJob whose pod lands on the local-runner node, where
`finetune-train` really trains a tiny model. Live progress arrives in status.progress through the
trainer's own status patch (per-job ServiceAccount + Role), the final summary in status."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "operator"))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "trainer"))

from operator_helpers import (CRD_FILE, GROUP, PLURAL, Ftj, assert_never_forbidden, launch_operator,  # noqa: E402
                              make_namespace)

pytestmark = [pytest.mark.timeout(480), pytest.mark.slow]
# `make install` installs the trainer extra, so `finetune-train` is on the venv's PATH (the local
# runner puts the venv's bin first): this test never skips.


def test_finetunejob_trains_on_local_runner(cluster: Any, kubectl: Any, kube_api: client.ApiClient,
                                           local_runner: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    import helpers  # tests/unit/trainer/helpers.py: tiny models and datasets

    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    ns = make_namespace(kubectl, "e2e")
    # not under /tmp: the pod gets its own /tmp (an emptyDir) on the local runner
    work = Path("/var/tmp") / f"finetune-e2e-{ns}"
    work.mkdir(parents=True)
    work.chmod(0o777)
    helpers.build_tiny_llama(work / "model")
    helpers.write_jsonl(work / "train.jsonl", helpers.records("chat", n=64))
    pv = f"e2e-work-{ns}"
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(work)},
                  "claimRef": {"namespace": ns, "name": "work"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "work", "namespace": ns},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]}))
    workdir = tmp_path_factory.mktemp("e2e-operator")
    op = launch_operator(cluster, kubectl, ns, workdir, "--status-patch-interval", "1")
    try:
        op.wait_ready()
        ftjs = Ftj(client.CustomObjectsApi(kube_api), kube_api, ns)
        ftjs.create({
            "apiVersion": f"{GROUP}/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "tiny"},
            "spec": {
                "model": {"source": "pvc://work/model"},
                "dataset": {"source": "pvc://work/train.jsonl", "format": "chat", "validationSplit": 0.2},
                "peft": {"r": 4, "alpha": 8, "dropout": 0.0, "targetModules": ["auto"]},
                # long enough (a few seconds on 2 cores) for several live patches during training
                "training": {"maxSteps": 300, "batchSize": 2, "gradientAccumulationSteps": 1, "learningRate": 0.001,
                             "loggingSteps": 5, "maxSeqLength": 64, "gradientCheckpointing": False,
                             "warmupRatio": 0.0, "optimizer": "adamw_torch"},
                "evaluation": {"sampleGenerations": 1, "maxNewTokens": 4},
                "output": {"pvc": "work", "path": "out"},
                "resources": {"gpus": 0, "cpu": "1", "memory": "4Gi", "shmSize": "256Mi"},
                "scheduling": {"nodeSelector": {"finetune.dev/local-runner": "true"}},
            },
        })
        live: list[dict[str, Any]] = []
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            st = ftjs.status("tiny")
            if st.get("phase") == "Running" and st.get("progress"):
                live.append(st["progress"])
            if st.get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not final in time: {json.dumps(ftjs.status('tiny'), indent=1)}\n{op.logs()[-4000:]}")
        st = ftjs.status("tiny")
        assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
        pod = client.CoreV1Api(kube_api).read_namespaced_pod(st["podName"], ns)
        assert pod.spec.node_name == local_runner
        # live progress patched by the trainer itself while the run was Running
        assert live, "no status.progress seen while Running"
        training = [p for p in live if p.get("stage") == "training" and p.get("loss") is not None]
        assert training, live[-3:]
        assert all(p["totalSteps"] == 300 for p in training), training[-3:]
        assert any(p.get("step", 0) > 0 and "epoch" in p and "etaSeconds" in p and "percent" in p for p in training)
        assert st["progress"]["step"] >= 1
        # the trainer's patches never touched what the operator owns, and vice versa
        assert st["observedGeneration"] == 1 and st["jobName"] == "tiny-trainer"
        # final summary from the termination message: baseline vs tuned metrics, the artifact
        assert {"baselineEvalLoss", "evalLoss"} <= set(st["metrics"]), st["metrics"]
        assert st["artifacts"]["pvc"] == "work" and st["artifacts"]["path"].startswith("out")
        assert st["artifacts"].get("sizeBytes", 0) > 0 and len(st["artifacts"].get("sha256", "")) == 64
        assert (work / "out").is_dir()
        assert any((work / "out").rglob("adapter_model.safetensors"))
        kubectl("wait", "--for=condition=Ready", "ftj/tiny", "--timeout=10s", namespace=ns)
        assert_never_forbidden(op)
    finally:
        code = op.stop()
        print(f"--- operator (exit {code})\n{op.logs()[-4000:]}")
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kubectl("delete", "pv", pv, "--wait=false", check=False)
        shutil.rmtree(work, ignore_errors=True)
