from jobs.models import Job
from jobs.rules.states import CLAIM, DIE, FAIL_AND_RETRY, SUCCEED, TERMINAL, TRANSITIONS, Status


def test_every_status_has_an_entry_in_the_transition_table():
    assert set(TRANSITIONS) == set(Status.values)


def test_every_target_is_a_known_status():
    for targets in TRANSITIONS.values():
        assert targets <= set(Status.values)


def test_only_succeeded_and_cancelled_are_terminal():
    assert TERMINAL == {Status.SUCCEEDED, Status.CANCELLED}


def test_a_job_is_claimed_only_from_queued():
    assert CLAIM.sources == {Status.QUEUED} and CLAIM.target == Status.RUNNING


def test_only_a_running_job_can_succeed_retry_or_die():
    for move in (SUCCEED, FAIL_AND_RETRY, DIE):
        assert move.sources == {Status.RUNNING}
    assert {Status.SUCCEEDED, Status.RETRYING, Status.DEAD} == {SUCCEED.target, FAIL_AND_RETRY.target, DIE.target}


def test_every_unfinished_job_can_be_cancelled_and_no_finished_one():
    assert {s for s in Status.values if Status.CANCELLED in TRANSITIONS[s]} == set(Status.values) - TERMINAL - {
        Status.DEAD
    }


def test_every_non_initial_status_is_reachable():
    reachable = set().union(*TRANSITIONS.values())
    assert set(Status.values) - reachable == {Status.SCHEDULED}


def test_database_constraint_lists_every_status():
    constraint = next(c for c in Job._meta.constraints if c.name == "job_status_valid")
    assert set(constraint.condition.children[0][1]) == set(Status.values)


def test_the_named_moves_are_exactly_the_table():
    from jobs.rules.states import NAMED

    pairs = {(source, move.target) for move in NAMED for source in move.sources}
    assert pairs == {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert len({move.name for move in NAMED}) == len(NAMED)


def test_the_sets_callers_ask_about_follow_from_the_moves():
    from jobs.rules.states import CANCEL, FINISHED, WAITING_FOR_LIMIT, WAITING_FOR_TIME

    assert CANCEL.sources == {Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.WAITING}
    assert WAITING_FOR_TIME == {Status.SCHEDULED, Status.RETRYING}
    assert WAITING_FOR_LIMIT == {Status.WAITING}
    assert FINISHED == {Status.SUCCEEDED, Status.CANCELLED, Status.DEAD}


def test_a_job_waits_for_a_limit_only_from_queued_and_wakes_back_to_queued():
    from jobs.rules.states import WAIT, WAKE

    assert (WAIT.sources, WAIT.target) == ({Status.QUEUED}, Status.WAITING)
    assert (WAKE.sources, WAKE.target) == ({Status.WAITING}, Status.QUEUED)
    assert TRANSITIONS[Status.WAITING] == {Status.QUEUED, Status.CANCELLED}
