"""When the operator reads a creating pod's events again: a failing mount changes nothing in the
pod, so no watch event comes, and the reconciler has to schedule the look itself."""

import datetime as dt

from finetune_operator.podevents import LOOKUP_EVERY_SECONDS, MOUNT_GRACE_SECONDS, look_again_in, stuck_creating
from support.status_objects import SCHEDULED, T0, pod

BOUND = dt.datetime.fromisoformat(T0.replace("Z", "+00:00"))


def test_a_pod_bound_moments_ago_is_looked_at_when_its_grace_ends():
    creating = pod("Pending", scheduled=SCHEDULED, waiting={"reason": "ContainerCreating"})
    now = BOUND + dt.timedelta(seconds=5)
    assert not stuck_creating(creating, now)
    assert look_again_in(creating, now) == MOUNT_GRACE_SECONDS - 5 + 0.5


def test_a_pod_stuck_creating_is_looked_at_every_lookup_interval():
    creating = pod("Pending", scheduled=SCHEDULED, waiting={"reason": "ContainerCreating"})
    now = BOUND + dt.timedelta(seconds=MOUNT_GRACE_SECONDS + 1)
    assert stuck_creating(creating, now)
    assert look_again_in(creating, now) == LOOKUP_EVERY_SECONDS


def test_pods_that_are_not_creating_are_not_looked_at():
    now = BOUND + dt.timedelta(seconds=60)
    for p in (
        None,
        pod("Pending"),  # not bound yet: the scheduler's events say why
        pod("Running", scheduled=SCHEDULED, running=True),
        pod("Pending", scheduled=SCHEDULED, waiting={"reason": "ImagePullBackOff"}),
    ):
        assert look_again_in(p, now) is None, p
