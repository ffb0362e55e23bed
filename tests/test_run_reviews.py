"""Reviews made while a run goes: recorded from another connection to the store, as
`synth review` does beside `synth run`, they count toward the run's quotas."""

from __future__ import annotations

from synth.plan import plan_cells
from synth.review.queue import decide, enroll
from synth.runner import Snapshot, run
from synth.seeds import read_seeds
from synth.store import Store

PII_TO_REVIEW = '[[filters]]\nkind = "pii"\naction = "review"\n\n[[filters]]\nkind = "exact_dedup"'


def test_reviews_recorded_during_a_run_count_toward_its_quotas(sim_project, sim):
    sim.configure(p_pii=0.3)
    sim_project.write_config("double_review = 0\n", base_url=sim.base_url)
    path = sim_project.config_path
    path.write_text(path.read_text().replace('[[filters]]\nkind = "exact_dedup"', PII_TO_REVIEW))
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    # A first run leaves rows sampled for review (counted) and rows the pii filter
    # held (not counted until approved).
    assert run(config).status == "finished"
    # Larger targets: the second run takes several chunks of replies, and the reviews
    # land after its first.
    path.write_text(path.read_text().replace("per_label = 6", "per_label = 30"))
    config = sim_project.config()
    reviewed: list[tuple[str, str]] = []

    def review_now(snap: Snapshot) -> None:
        # After the second run's first chunk is stored, from a connection of its own:
        # a sampled row of a cell rejected (the cell is one short again), the held
        # rows of the other cells approved (each counts, up to its cell's target).
        if reviewed:
            return
        with Store(config.db_path) as other:
            enroll(other, config.review)
            queue = [q for q in other.reviews.queue() if not q["reviewers"]]
            sampled = next(q for q in queue if q["reason"] == "sampled" and q["slice"] == "default")
            decide(other, config, sampled["example_id"], "ana", "reject", reason="unnatural")
            reviewed.append(("reject", f"{sampled['slice']}/{sampled['label']}"))
            for q in queue:
                if q["reason"] == "filter" and (q["slice"], q["label"]) != (
                    sampled["slice"],
                    sampled["label"],
                ):
                    decide(other, config, q["example_id"], "ana", "approve")
                    reviewed.append(("approve", f"{q['slice']}/{q['label']}"))

    summary = run(config, progress=review_now)
    assert summary.status == "finished", summary.stop_reason
    assert [v for v, _ in reviewed].count("approve") >= 2, "the simulator planted PII"
    with sim_project.store() as store:
        statuses = store.examples.statuses()
        plans = plan_cells(config, store.examples.cell_counts())
    assert statuses["review_rejected"] == 1
    # Every cell is exactly full: the rejected row was made good, the approved ones
    # took the place of rows the run would otherwise have accepted.
    assert {str(p.cell): p.real + p.synthetic - p.target for p in plans} == {
        str(p.cell): 0 for p in plans
    }
