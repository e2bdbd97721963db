"""The supervisor's restart decisions and exit code, without processes."""

from __future__ import annotations

import signal

from urbanpulse.supervisor import SHARE_GROUP, platform_children
from urbanpulse.supervisor_policy import (
    GiveUp,
    Restart,
    RestartPolicy,
    RestartTracker,
    describe_exit,
    supervisor_exit_code,
)

POLICY = RestartPolicy(first_delay_s=1.0, max_delay_s=5.0, stable_after_s=60.0, max_quick_crashes=6)


def test_quick_crashes_double_the_delay_up_to_the_cap() -> None:
    tracker = RestartTracker(POLICY)
    delays = [tracker.after_exit(ran_s=2.0, returncode=1) for _ in range(5)]
    # 1, 2, 4, 8 -> capped at 5, 16 -> capped at 5
    assert delays == [Restart(1.0), Restart(2.0), Restart(4.0), Restart(5.0), Restart(5.0)]


def test_the_crash_loop_limit_gives_up_and_says_why() -> None:
    tracker = RestartTracker(POLICY)
    for _ in range(5):
        assert isinstance(tracker.after_exit(ran_s=0.5, returncode=1), Restart)
    decision = tracker.after_exit(ran_s=0.5, returncode=-signal.SIGSEGV)
    assert isinstance(decision, GiveUp)
    assert "crash loop: 6 exits in a row" in decision.reason
    assert "within 60s of starting" in decision.reason
    assert "killed by SIGSEGV" in decision.reason


def test_a_child_that_ran_long_enough_starts_the_count_afresh() -> None:
    tracker = RestartTracker(POLICY)
    for _ in range(5):
        tracker.after_exit(ran_s=1.0, returncode=1)
    # Five quick crashes, then one after a healthy hour: the sixth is not a crash loop.
    assert tracker.after_exit(ran_s=3600.0, returncode=-signal.SIGKILL) == Restart(1.0)
    assert tracker.after_exit(ran_s=1.0, returncode=1) == Restart(2.0)


def test_exactly_stable_after_counts_as_stable() -> None:
    tracker = RestartTracker(POLICY)
    tracker.after_exit(ran_s=1.0, returncode=1)
    assert tracker.after_exit(ran_s=60.0, returncode=1) == Restart(1.0)


def test_invalid_settings_give_up_at_once() -> None:
    decision = RestartTracker(POLICY).after_exit(ran_s=1.0, returncode=2)
    assert isinstance(decision, GiveUp)
    assert "exit code 2" in decision.reason
    assert "settings are invalid" in decision.reason


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(-99) == "killed by signal 99"


def test_exit_code_is_zero_only_for_a_clean_stop() -> None:
    assert supervisor_exit_code(gave_up=False, stop_codes=[0, 0, 0]) == 0
    assert supervisor_exit_code(gave_up=False, stop_codes=[]) == 0
    # Ended by our SIGTERM before installing its handler: still the stop we asked for.
    assert supervisor_exit_code(gave_up=False, stop_codes=[0, -signal.SIGTERM]) == 0
    # A straggler we had to SIGKILL, a child failing on its way out, or a crash loop: 1.
    assert supervisor_exit_code(gave_up=False, stop_codes=[0, -signal.SIGKILL]) == 1
    assert supervisor_exit_code(gave_up=False, stop_codes=[1]) == 1
    assert supervisor_exit_code(gave_up=True, stop_codes=[0]) == 1


def test_bridges_share_a_group_only_when_there_are_several() -> None:
    def groups(bridges: int, first_bridge: int = 1) -> set[str | None]:
        children = platform_children(bridges, 0, False, first_bridge=first_bridge)
        return {c.env.get("URBANPULSE_MQTT__SHARE_GROUP") for c in children}

    # One bridge keeps the plain subscription a broker restores after a restart.
    assert groups(1) == {None}
    assert groups(2) == {SHARE_GROUP}
    assert groups(1, first_bridge=3) == {SHARE_GROUP}  # this machine's share of several
