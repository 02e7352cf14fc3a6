"""The output claim's access modes against several nodes and several serving replicas."""

import pytest

from finetune_api.protocol import FailureReason
from finetune_operator import builders
from finetune_operator.claims import access_modes, access_modes_matter, claim_refusal


def spec_of(ftj, nodes=1, replicas=1, runtimes=None):
    ftj["spec"]["resources"]["nodes"] = nodes
    ftj["spec"]["serving"] = {"replicas": replicas, **({"runtimes": runtimes} if runtimes is not None else {})}
    return builders.parse_spec(ftj)


def test_several_nodes_on_a_claim_that_is_not_read_write_many_are_refused_naming_the_field(ftj):
    refused = claim_refusal(spec_of(ftj, nodes=2), ["ReadWriteOnce"])
    assert refused is not None and refused.final and refused.reason == FailureReason.CLAIM_ACCESS_MODE
    assert refused.message.startswith("resources.nodes 2 needs output.pvc 'artifacts' to be ReadWriteMany")
    assert "(it is ReadWriteOnce)" in refused.message and "\n" not in refused.message
    assert claim_refusal(spec_of(ftj, nodes=2), ["ReadOnlyMany"]) is not None  # shared, but read-only
    assert claim_refusal(spec_of(ftj, nodes=2), ["ReadWriteOnce", "ReadWriteMany"]) is None


def test_several_serving_replicas_need_a_claim_several_nodes_mount(ftj):
    refused = claim_refusal(spec_of(ftj, replicas=3), ["ReadWriteOnce"])
    assert refused is not None and refused.reason == FailureReason.CLAIM_ACCESS_MODE
    assert refused.message.startswith("serving.replicas 3 needs the output claim 'artifacts'")
    assert claim_refusal(spec_of(ftj, replicas=3), ["ReadOnlyMany"]) is None
    assert claim_refusal(spec_of(ftj, replicas=3, runtimes=[]), ["ReadWriteOnce"]) is None  # no manifests


@pytest.mark.parametrize(
    ("nodes", "replicas", "runtimes", "matter"),
    [(1, 1, None, False), (2, 1, None, True), (1, 2, None, True), (1, 2, [], False)],
)
def test_the_claim_is_read_only_where_its_modes_matter(ftj, nodes, replicas, runtimes, matter):
    assert access_modes_matter(spec_of(ftj, nodes, replicas, runtimes)) is matter


def test_a_claim_not_there_keeps_todays_behaviour(ftj):
    assert claim_refusal(spec_of(ftj, nodes=2), None) is None  # the pod waits for it, and says so


def test_the_bound_volumes_modes_count_else_the_requested_ones():
    assert access_modes({"spec": {"accessModes": ["ReadWriteOnce"]}}) == ["ReadWriteOnce"]
    bound = {"spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"accessModes": ["ReadWriteOnce", "ReadWriteMany"]}}
    assert access_modes(bound) == ["ReadWriteOnce", "ReadWriteMany"]
    assert access_modes({}) == []
