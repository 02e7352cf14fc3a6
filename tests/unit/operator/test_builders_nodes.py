"""A run over several nodes (``resources.nodes``): the Indexed Job, its headless Service, the
distributed contract's environment, one pod per node, and PEER_LOST not counted as a failure."""

import pytest

from finetune_api import contract, distributed
from finetune_api.protocol import ExitCode
from finetune_operator import builders


def spread(ftj, nodes=2, **resources):
    ftj["spec"]["resources"].update(nodes=nodes, **resources)
    return builders.parse_spec(ftj)


def env_of(job):
    return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_two_nodes_are_an_indexed_job_whose_pods_find_node_0_by_name(ftj, cfg):
    spec = spread(ftj, rendezvousTimeoutSeconds=120)
    job = builders.job(ftj, spec, cfg)
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
    pod = job["spec"]["template"]["spec"]
    # the Job controller names pod i's host <job>-i; the subdomain puts it under the Service
    assert pod["subdomain"] == builders.service_name("demo") == "demo-trainer" == job["metadata"]["name"]
    env = env_of(job)
    assert env[distributed.NNODES] == "2"
    assert env[distributed.RDZV_ENDPOINT] == "demo-trainer-0.demo-trainer:29400"
    assert env[distributed.RDZV_ID] == "1111-2222"  # the FineTuneJob's uid: a re-created run is a new rendezvous
    assert env[distributed.RDZV_TIMEOUT_SECONDS] == "120"
    assert distributed.NODE_RANK not in env  # each pod's JOB_COMPLETION_INDEX
    assert env["FINETUNE_GPUS"] == "2"  # per node


def test_the_rendezvous_timeout_defaults_to_the_trainers(ftj, cfg):
    env = env_of(builders.job(ftj, spread(ftj, nodes=3), cfg))
    assert env[distributed.NNODES] == "3" and distributed.RDZV_TIMEOUT_SECONDS not in env


def test_one_trainer_pod_per_node_and_the_users_own_affinity_kept(ftj, cfg):
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}]
        }
    }
    ftj["spec"]["scheduling"] = {"affinity": {"nodeAffinity": node_affinity}}
    affinity = builders.job(ftj, spread(ftj), cfg)["spec"]["template"]["spec"]["affinity"]
    assert affinity["nodeAffinity"] == builders.parse_spec(ftj).scheduling.affinity.to_wire()["nodeAffinity"]
    (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {
        "labelSelector": {
            "matchLabels": {"finetune.dev/finetunejob": "demo", "app.kubernetes.io/component": "trainer"}
        },
        "topologyKey": "kubernetes.io/hostname",
    }
    # the selector matches the run's trainer pods
    labels = builders.job(ftj, spread(ftj), cfg)["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()


def test_a_pod_that_only_lost_a_peer_does_not_count_against_the_backoff_limit(ftj, cfg):
    ftj["spec"]["backoffLimit"] = 2
    job = builders.job(ftj, spread(ftj), cfg)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert job["spec"]["backoffLimit"] == 2
    assert rules[0]["action"] == "FailJob"  # not retried: first, whatever the other rules say
    assert int(ExitCode.PEER_LOST) not in rules[0]["onExitCodes"]["values"]
    ignored = [r for r in rules if r["action"] == "Ignore"]
    assert {"type": "DisruptionTarget", "status": "True"} in ignored[0]["onPodConditions"]
    assert ignored[1]["onExitCodes"] == {"containerName": "trainer", "operator": "In", "values": [13]}
    one_node = builders.job(ftj, spread(ftj, nodes=1), cfg)["spec"]["podFailurePolicy"]["rules"]
    assert one_node == rules[:2]


def test_the_headless_service_names_only_the_runs_trainer_pods(ftj, cfg):
    spec = spread(ftj)
    kinds = [o["kind"] for o in builders.pod_prerequisites(ftj, spec, cfg)]
    assert kinds == ["ConfigMap", "ServiceAccount", "RoleBinding", "Service"]
    service = builders.pod_prerequisites(ftj, spec, cfg)[-1]
    assert service["metadata"]["name"] == "demo-trainer"
    assert service["metadata"]["ownerReferences"][0]["uid"] == "1111-2222"
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {"finetune.dev/finetunejob": "demo", "app.kubernetes.io/component": "trainer"},
        "publishNotReadyAddresses": True,  # node 0 is named before any readiness
        "ports": [{"name": "rendezvous", "port": 29400, "targetPort": 29400, "protocol": "TCP"}],
    }


@pytest.mark.parametrize("nodes", [1, 2])
def test_every_variable_of_a_spread_run_is_in_the_contract(ftj, cfg, nodes):
    env = env_of(builders.job(ftj, spread(ftj, nodes=nodes), cfg))
    literal = {n for n, v in env.items() if v is not None}
    assert literal <= set(contract.LITERAL_ENV)


def test_one_node_renders_no_spread(ftj, cfg):
    job = builders.job(ftj, spread(ftj, nodes=1), cfg)
    pod = job["spec"]["template"]["spec"]
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1, 1)
    assert "completionMode" not in job["spec"] and "subdomain" not in pod and "affinity" not in pod
    assert not {distributed.NNODES, distributed.RDZV_ENDPOINT} & set(env_of(job))
    assert [o["kind"] for o in builders.pod_prerequisites(ftj, builders.parse_spec(ftj), cfg)][-1] == "RoleBinding"


def test_the_claims_access_modes_reach_the_trainers_config(ftj, cfg):
    spec = spread(ftj)
    config_map = builders.pod_prerequisites(ftj, spec, cfg, ["ReadWriteMany"])[0]
    assert '"outputAccessModes": [\n      "ReadWriteMany"\n    ]' in config_map["data"]["config.json"]
