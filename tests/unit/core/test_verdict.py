"""The verdict record (core.verdict): what promote and the deletes check before they act on a candidate."""

from __future__ import annotations

import pytest

from gemini_tuning.core.gate import GateConfig
from gemini_tuning.core.verdict import (
    VerdictRefused,
    build_verdict,
    check_deletion,
    check_promotion,
    policy_hash,
    promotion_candidate,
)

pytestmark = pytest.mark.fast

MODEL = "projects/p/locations/us-central1/models/9@2"
CAND = {"backend": "vertex", "tuned_model": MODEL, "endpoint": "projects/p/locations/us-central1/endpoints/5"}
POLICY = GateConfig(min_prompts=20, thresholds={"normalized_match": 0.6}).to_dict()
RUN = {"dag_id": "gemini_tuning_pipeline", "run_id": "manual__1"}


def verdict(decision="promote", candidate=CAND, generation=7, policy=POLICY, **over):
    args = {"decided_at": "2026-12-07T10:00:00Z", **RUN, **over}
    return build_verdict(decision=decision, summary=f"{decision}: ...", rules=[], candidate=candidate,
                         champion_generation=generation, champion_model="projects/p/locations/us-central1/models/1@1",
                         policy=policy, results_uri="gs://b/run/eval/results.jsonl", **args)


def promote_check(record, candidate=CAND, generation=7, policy=POLICY, **kw):
    return check_promotion(record, candidate=candidate, champion_generation=generation, policy=policy,
                           where="gs://b/run/verdict.json", **{**RUN, **kw})


def test_a_promote_verdict_about_exactly_this_candidate_allows_promotion():
    v = verdict()
    assert promote_check(v)["verdict_id"] == v["verdict_id"]
    assert v["policy_hash"] == policy_hash(dict(reversed(list(POLICY.items()))))    # key order does not matter
    assert len(v["verdict_id"]) == 24 and v["verdict_id"] != verdict(decided_at="2026-12-07T10:00:01Z")["verdict_id"]


@pytest.mark.parametrize(("record", "kwargs", "message"), [
    (None, {}, "no verdict record at gs://b/run/verdict.json: the gate has not decided in this run"),
    ({"decision": "promote"}, {}, "is not a verdict record"),
    (verdict("delete"), {}, "the gate's verdict is DELETE, not PROMOTE"),
    (verdict("no_decision"), {}, "the gate's verdict is NO_DECISION, not PROMOTE"),
    (verdict(run_id="manual__0"), {}, "is the verdict of gemini_tuning_pipeline/manual__0, not of this run"),
    (verdict(), {"candidate": {**CAND, "tuned_model": "projects/p/locations/us-central1/models/9@3"}},
     "the verdict is about .*9@2.* but promote would promote .*9@3"),
    (verdict(), {"candidate": {**CAND, "checkpoint_id": "1"}}, "checkpoint_id': None.* but promote would promote"),
    (verdict(), {"generation": 8}, "at generation 7, but promote would swap from generation 8"),
    (verdict(), {"policy": {**POLICY, "min_prompts": 1}}, "judged under policy sha256:.*given policy sha256:"),
    (verdict(), {"approval_required": True}, "no approval: the approval step has not approved"),
    (verdict(), {"approval_required": True, "approval": {"approved": True, "verdict_id": "x"}},
     "the approval was given for verdict x, not for the current verdict"),
    (verdict(), {"approval_required": True, "approval": {"approved": False, "chosen": "Reject",
                                                         "verdict_id": verdict()["verdict_id"]}},
     "answered 'Reject', not Approve"),
])
def test_promotion_is_refused_without_exactly_matching_verdict(record, kwargs, message):
    with pytest.raises(VerdictRefused, match=message):
        promote_check(record, **kwargs)


def test_an_edited_record_is_refused():
    v = verdict("delete")
    forged = {**v, "decision": "promote"}                # someone flipped the decision, kept the id
    with pytest.raises(VerdictRefused, match="changed after the gate wrote it"):
        promote_check(forged)


def test_an_approval_bound_to_the_verdict_allows_promotion():
    v = verdict()
    ok = {"approved": True, "chosen": "Approve", "verdict_id": v["verdict_id"]}
    assert promote_check(v, approval_required=True, approval=ok)["decision"] == "promote"


def test_the_promoted_candidate_is_the_evaluated_checkpoint():
    ev = {"best_checkpoint": {"checkpoint_id": 2, "endpoint": "projects/p/locations/us-central1/endpoints/8"}}
    cand = promotion_candidate(CAND, ev)
    assert cand["checkpoint_id"] == "2" and cand["endpoint"].endswith("/endpoints/8")
    v = verdict(candidate=cand)
    with pytest.raises(VerdictRefused, match="checkpoint_id': '2'"):    # the last checkpoint is not what was judged
        promote_check(v, candidate=CAND)
    assert promote_check(v, candidate=cand)
    with pytest.raises(VerdictRefused, match="no candidate: the tuning step produced no tuned model"):
        promotion_candidate(None, ev)


@pytest.mark.parametrize(("decision", "allowed", "approval", "result"), [
    ("delete", ("delete",), None, "delete"),
    ("delete", ("reject",), None, "keeping .*: the verdict is 'delete'"),
    ("promote", ("delete",), None, "keeping .*: it passed the gate$"),
    ("promote", ("reject",), {"approved": False}, "reject"),
    ("promote", ("reject",), {"approved": True}, "keeping .*: it passed the gate and no approval"),
    ("promote", ("reject",), {"approved": False, "verdict_id": "older"}, "keeping"),
    ("no_decision", ("delete", "reject"), None, "keeping .*: the gate made no decision"),
])
def test_a_deletion_needs_a_doom(decision, allowed, approval, result):
    v = verdict(decision)
    answer = None if approval is None else {"verdict_id": v["verdict_id"], **approval}
    kwargs = {"candidate": CAND, "where": "gs://b/run/verdict.json", "allowed": allowed, "approval": answer, **RUN}
    if result in ("delete", "reject"):
        assert check_deletion(v, **kwargs) == result
    else:
        with pytest.raises(VerdictRefused, match=result):
            check_deletion(v, **kwargs)
    with pytest.raises(VerdictRefused, match="the verdict is about"):   # never another model
        check_deletion(v, **{**kwargs, "candidate": {**CAND, "tuned_model": "projects/p/locations/l/models/1@1"}})
