"""Human review: sampling, the queue, what decisions do to counts, agreement, flags."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner
from conftest import write_jsonl

from synth.cli import cli
from synth.errors import StoreError
from synth.plan import plan_cells
from synth.records import CellKey, Seed
from synth.review import ReviewError
from synth.review.queue import decide, enroll, next_item
from synth.review.sample import round_half_up, sample_for_review
from synth.review.stats import acknowledge, flagged_cells, review_stats
from synth.runner import run
from synth.seeds import read_seeds
from synth.store import NewReview, Store

# -- sampling ------------------------------------------------------------------------


def _rows(sizes: dict[tuple[str, str], int]) -> list[tuple[str, str, str]]:
    return [(f"ex_{s}_{lab}_{i}", s, lab) for (s, lab), n in sizes.items() for i in range(n)]


@pytest.mark.parametrize(
    ("size", "fraction", "min_per_cell", "expected"),
    [
        (100, 0.2, 1, 20),
        (7, 0.2, 1, 1),  # 1.4 rounds to 1
        (13, 0.2, 1, 3),  # 2.6 rounds to 3
        (5, 0.5, 1, 3),  # 2.5 rounds half up
        (3, 0.2, 2, 2),  # 0.6, lifted to the minimum
        (1, 0.2, 3, 1),  # never more than the cell has
        (40, 0.0, 5, 0),  # no review asked for: no minimum either
        (10, 1.0, 1, 10),
    ],
)
def test_sample_size_per_cell(size, fraction, min_per_cell, expected):
    rows = _rows({("default", "a"): size, ("urgent", "b"): 2 * size})
    chosen = sample_for_review(rows, fraction, min_per_cell, seed=0)
    per_cell = {
        c: sum(1 for i in chosen if i.startswith(f"ex_{c}_")) for c in ("default", "urgent")
    }
    assert per_cell["default"] == expected
    big = min(2 * size, max(min_per_cell, round_half_up(fraction * 2 * size))) if fraction else 0
    assert per_cell["urgent"] == big
    assert len(set(chosen)) == len(chosen)


def test_sample_meets_the_minimum_in_every_cell_and_the_fraction_within_rounding():
    rng = random.Random(7)
    sizes = {("s", f"l{i}"): rng.randint(1, 60) for i in range(25)}
    chosen = set(sample_for_review(_rows(sizes), 0.2, 2, seed=3))
    for (s, lab), n in sizes.items():
        got = sum(1 for i in chosen if i.startswith(f"ex_{s}_{lab}_"))
        assert got >= min(2, n)
        assert got == min(n, max(2, round_half_up(0.2 * n)))
        assert abs(got - 0.2 * n) <= 0.5 or got == min(2, n)


def test_sample_is_deterministic_for_a_seed_and_ignores_row_order():
    rows = _rows({("default", "a"): 50, ("default", "b"): 30})
    first = sample_for_review(rows, 0.2, 1, seed=11)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert sorted(sample_for_review(shuffled, 0.2, 1, seed=11)) == sorted(first)
    assert sample_for_review(rows, 0.2, 1, seed=11) == first
    assert sorted(sample_for_review(rows, 0.2, 1, seed=12)) != sorted(first)


# -- a project with a review queue ---------------------------------------------------


def _project(sim_project, sim, review: str = ""):
    # Appended to the test config, whose last table is [review].
    sim_project.write_config(review, base_url=sim.base_url)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    return config


def test_filter_held_rows_are_queued_and_double_review_share_per_cell(sim_project, sim):
    sim.configure(p_pii=0.3)
    config = _project(sim_project, sim, "double_review = 0.5\n")
    config_text = sim_project.config_path.read_text()
    # A PII kind sent to review: those rows wait for a human and do not count yet.
    sim_project.config_path.write_text(
        config_text.replace(
            '[[filters]]\nkind = "exact_dedup"',
            '[[filters]]\nkind = "pii"\naction = "review"\n\n[[filters]]\nkind = "exact_dedup"',
        )
    )
    config = sim_project.config()
    assert run(config).status == "finished"
    with sim_project.store() as store:
        pending = store.reviews.unqueued()
        assert enroll(store, config.review) == len(pending)
        assert enroll(store, config.review) == 0  # queued once
        queue = store.reviews.queue()
    held = [q for q in queue if q["reason"] == "filter"]
    assert held, "the simulator planted PII: some rows were held by the filter"
    assert {q["example_id"] for q in queue} == {p["id"] for p in pending}
    by_cell: dict[tuple[str, str], list[int]] = {}
    for q in queue:
        by_cell.setdefault((q["slice"], q["label"]), []).append(q["reviews_needed"])
    for needed in by_cell.values():
        assert sum(n == 2 for n in needed) == round_half_up(0.5 * len(needed))


def test_approved_rows_keep_counting_and_review_rejected_rows_are_made_up(sim_project, sim):
    config = _project(sim_project, sim, "double_review = 0\n")
    assert run(config).status == "finished"
    with sim_project.store() as store:
        enroll(store, config.review)
        queue = store.reviews.queue()
        by_cell = {}
        for q in queue:
            by_cell.setdefault(CellKey(slice=q["slice"], label=q["label"]), q["example_id"])
        cells = sorted(by_cell, key=str)
        approve_cell, reject_cell = cells[0], cells[1]
        decide(store, config, by_cell[approve_cell], "ana", "approve")
        decide(store, config, by_cell[reject_cell], "ana", "reject", reason="unnatural")
        plans = {p.cell: p for p in plan_cells(config, store.examples.cell_counts())}
        statuses = {
            r["id"]: r["status"]
            for r in store.examples.by_id([by_cell[approve_cell], by_cell[reject_cell]])
        }
    assert statuses == {by_cell[approve_cell]: "approved", by_cell[reject_cell]: "review_rejected"}
    assert plans[approve_cell].deficit == 0  # an approved row still counts
    assert plans[reject_cell].deficit == 1  # a rejected one no longer does
    before = sim.stats()["requests"]
    again = run(config)
    assert again.status == "finished" and again.calls > 0
    assert sim.stats()["requests"] > before
    with sim_project.store() as store:
        plans = {p.cell: p for p in plan_cells(config, store.examples.cell_counts())}
    assert plans[reject_cell].deficit == 0


def test_double_review_moves_status_after_both_and_a_reject_wins(sim_project, sim):
    config = _project(sim_project, sim, "double_review = 1\n")
    assert run(config).status == "finished"
    with sim_project.store() as store:
        enroll(store, config.review)
        ids = [q["example_id"] for q in store.reviews.queue()]
        assert all(q["reviews_needed"] == 2 for q in store.reviews.queue())
        a, b = ids[0], ids[1]
        decide(store, config, a, "ana", "approve")
        assert store.examples.by_id([a])[0]["status"] == "review_pending"
        # The first reviewer is not offered it again; the second is.
        assert next_item(store, config.review, "ana") != a
        assert a in {next_item(store, config.review, "ben", skip=[i for i in ids if i != a])}
        decide(store, config, a, "ben", "approve")
        decide(store, config, b, "ana", "approve")
        decide(store, config, b, "ben", "reject", reason="off_label")
        assert not decide(store, config, b, "ben", "approve")  # once per reviewer
        statuses = {r["id"]: r["status"] for r in store.examples.by_id([a, b])}
        assert len(store.reviews.all(b)) == 2
    assert statuses == {a: "approved", b: "review_rejected"}


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("reject", {}, "reject reason None is not in review.reasons"),
        ("reject", {"reason": "boring"}, "'boring' is not in review.reasons"),
        ("edit", {"text": "  "}, "an edit needs the new text"),
        ("edit", {"text": "refund"}, "the edited text fails the schema filter: too_short"),
        ("shrug", {}, "unknown action 'shrug'"),
    ],
)
def test_bad_decisions_name_the_row_and_change_nothing(sim_project, sim, action, kwargs, message):
    config = _project(sim_project, sim)
    assert run(config).status == "finished"
    with sim_project.store() as store:
        enroll(store, config.review)
        example_id = store.reviews.queue()[0]["example_id"]
        with pytest.raises(ReviewError, match=message) as e:
            decide(store, config, example_id, "ana", action, **kwargs)
        assert e.value.where == example_id
        assert store.count("reviews") == 0 and store.count("edits") == 0
    with sim_project.store() as store, pytest.raises(ReviewError, match="reviewer's name"):
        decide(store, config, example_id, " ", "approve")


# -- agreement -----------------------------------------------------------------------


def _double_reviewed(store, cells: dict[str, list[tuple[str, str]]]) -> None:
    """Rows (real ones, queued by hand) with a first and a second verdict each."""
    seeds, pairs = [], []
    for label, verdicts in cells.items():
        for i, pair in enumerate(verdicts):
            text = f"{label} row {i}"
            seeds.append(
                Seed(text=text, label=label, data={"text": text, "label": label}, origin="t")
            )
            pairs.append(pair)
    store.examples.add_seeds(seeds)
    ids = [r["id"] for r in store.examples.seeds() if r["label"] in cells]
    store.reviews.enqueue([(i, "sampled", 2) for i in ids])
    store.reviews.add(
        [
            NewReview(i, "ana", a, "web", reason=_tag(a))
            for i, (a, _) in zip(ids, pairs, strict=True)
        ]
    )
    store.reviews.add(
        [
            NewReview(i, "ben", b, "web", reason=_tag(b))
            for i, (_, b) in zip(ids, pairs, strict=True)
        ]
    )


def _tag(verdict: str) -> str | None:
    return "other" if verdict == "reject" else None


def test_kappa_per_cell_and_overall_on_a_known_table(project):
    # The textbook table: of 50 items both say yes to 20, both no to 15, and they
    # split 5 / 10: p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
    # Split by cell, each cell's first reviewer uses one verdict only: kappa 0 there.
    ok, no = "approve", "reject"
    cells = {
        "alpha": [(ok, ok)] * 20 + [(ok, no)] * 5,
        "beta": [(no, ok)] * 10 + [(no, no)] * 15,
        # p_o = 0.72, p_e = 0.6 * 0.64 + 0.4 * 0.36 = 0.528, kappa = 0.192 / 0.472
        "gamma": [(ok, ok)] * 12 + [(ok, no)] * 3 + [(no, ok)] * 4 + [(no, no)] * 6,
    }
    config = project.config()
    with project.store() as store:
        _double_reviewed(store, {"alpha": cells["alpha"], "beta": cells["beta"]})
        stats = review_stats(store, config.review)
        assert stats.overall.n == 50
        assert stats.overall.kappa == pytest.approx(0.4)
        assert stats.overall.observed == pytest.approx(0.7)
        by_cell = {c.label: c for c in stats.cells}
        assert by_cell["alpha"].agreement.kappa == pytest.approx(0.0)
        assert by_cell["beta"].agreement.kappa == pytest.approx(0.0)
        assert by_cell["beta"].rejected == 25 + 15 and by_cell["alpha"].rejected == 5
        assert by_cell["alpha"].done == 25 and by_cell["alpha"].queued == 25
    with project.store() as store:
        _double_reviewed(store, {"gamma": cells["gamma"]})
        gamma = {c.label: c for c in review_stats(store, config.review).cells}["gamma"]
    assert gamma.agreement.kappa == pytest.approx(0.192 / 0.472)
    assert gamma.agreement.low
    out = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "review", "stats"], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    assert "0.41 (25) low" in out.output and "0.00 (25) low" in out.output
    assert "reviews: ana 75, ben 75" in out.output


# -- flagged cells -------------------------------------------------------------------


def test_a_cell_reviewers_reject_stops_generating_until_acknowledged(sim_project, sim):
    config = _project(
        sim_project, sim, "double_review = 0\nmax_reject_share = 0.5\nflag_min_reviews = 1\n"
    )
    assert run(config).status == "finished"
    cell = CellKey(slice="default", label="exchange_rate")
    with sim_project.store() as store:
        enroll(store, config.review)
        [row] = [
            q for q in store.reviews.queue() if (q["slice"], q["label"]) == (cell.slice, cell.label)
        ]
        decide(store, config, row["example_id"], "ana", "reject", reason="off_label")
        assert flagged_cells(store, config.review) == {cell}
    runner = CliRunner()
    args = ["--config", str(sim_project.config_path)]
    status = runner.invoke(cli, [*args, "status"], catch_exceptions=False)
    assert "flagged: default/exchange_rate: reviewers rejected 1 of 1 reviews" in status.output

    sim.reset()
    held = runner.invoke(cli, [*args, "run", "--quiet"], catch_exceptions=False)
    assert held.exit_code == 3, held.output
    assert "review: reviewers rejected too many of default/exchange_rate" in held.output
    assert sim.stats()["requests"] == 0  # the only open cell is the flagged one

    bad = runner.invoke(cli, [*args, "review", "ack", "exchange_rate"])
    assert bad.exit_code != 0 and "SLICE/LABEL" in bad.output
    ack = runner.invoke(cli, [*args, "review", "ack", "default/exchange_rate", "--note", "t"])
    assert ack.exit_code == 0 and "1 reviews acknowledged" in ack.output
    with sim_project.store() as store:
        assert flagged_cells(store, config.review) == set()
    resumed = runner.invoke(cli, [*args, "run", "--quiet"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert sim.stats()["requests"] > 0
    with sim_project.store() as store:
        plans = {p.cell: p for p in plan_cells(config, store.examples.cell_counts())}
    assert plans[cell].deficit == 0


def test_ack_of_a_cell_without_reviews_is_an_error(project):
    with project.store() as store, pytest.raises(ReviewError, match="no reviews"):
        acknowledge(store, "default/card_arrival")


def test_add_reviews_is_all_or_nothing(sim_project, sim):
    config = _project(sim_project, sim, "double_review = 0\n")
    assert run(config).status == "finished"
    with sim_project.store() as store:
        enroll(store, config.review)
        first = store.reviews.queue()[0]["example_id"]
        edited = {**store.examples.by_id([first])[0]["data"], "text": "an edited text"}
        good = NewReview(first, "ana", "approve", "web", edited_data=edited, edited_text="x")
        with pytest.raises(StoreError, match="ex_missing: not in the review queue"):
            store.reviews.add([good, NewReview("ex_missing", "ana", "approve", "web")])
        assert store.count("reviews") == 0 and store.count("edits") == 0
        assert store.examples.by_id([first])[0]["status"] == "review_pending"
        assert store.examples.by_id([first])[0]["source"] == "synthetic"


def test_an_edit_that_adds_pii_is_refused_with_the_filters_reason(sim_project, sim):
    config = _project(sim_project, sim)
    text = sim_project.config_path.read_text().replace(
        '[[filters]]\nkind = "exact_dedup"',
        '[[filters]]\nkind = "pii"\naction = "redact"\n\n[[filters]]\nkind = "exact_dedup"',
    )
    sim_project.config_path.write_text(text)
    config = sim_project.config()
    assert run(config).status == "finished"
    with sim_project.store() as store:
        enroll(store, config.review)
        example_id = store.reviews.queue()[0]["example_id"]
        mail = "my card never came, write to ana.lopez@example.com"
        with pytest.raises(ReviewError, match="fails the pii filter: pii_redacted: email"):
            decide(store, config, example_id, "ana", "edit", text=mail)
        assert store.count("reviews") == 0 and store.count("edits") == 0
        assert decide(store, config, example_id, "ana", "edit", text="my card never came at all")
        assert store.examples.by_id([example_id])[0]["source"] == "edited"


def test_approving_held_rows_never_pushes_a_cell_over_its_target(sim_project, sim):
    sim.configure(p_pii=0.4)
    _project(sim_project, sim, "double_review = 0\n")
    text = sim_project.config_path.read_text().replace(
        '[[filters]]\nkind = "exact_dedup"',
        '[[filters]]\nkind = "pii"\naction = "review"\n\n[[filters]]\nkind = "exact_dedup"',
    )
    sim_project.config_path.write_text(text)
    config = sim_project.config()
    assert run(config).status == "finished"

    def cells(store):
        return {p.cell: p for p in plan_cells(config, store.examples.cell_counts())}

    with sim_project.store() as store:
        enroll(store, config.review)
        queue = store.reviews.queue()
        held = [q for q in queue if q["reason"] == "filter"]
        sampled = [q for q in queue if q["reason"] == "sampled"]
        held_in: dict[CellKey, int] = {}
        for q in held:
            cell = CellKey(slice=q["slice"], label=q["label"])
            held_in[cell] = held_in.get(cell, 0) + 1
        key = max(held_in, key=lambda c: (held_in[c], str(c)))
        assert cells(store)[key].deficit == 0
        # Room made in the cell by a reviewer's reject: one held row may fill it.
        room = next(q for q in sampled if CellKey(slice=q["slice"], label=q["label"]) == key)
        decide(store, config, room["example_id"], "ana", "reject", reason="unnatural")
        assert cells(store)[key].deficit == 1
        in_cell = [q for q in held if CellKey(slice=q["slice"], label=q["label"]) == key]
        assert len(in_cell) >= 2, "the simulator planted PII in several rows of the cell"
        for q in held:
            decide(store, config, q["example_id"], "ana", "approve")
        statuses = {
            r["id"]: r["status"] for r in store.examples.by_id([q["example_id"] for q in held])
        }
        plans = cells(store)
        funnel = {(r["slice"], r["label"]): r for r in store.reports.funnel()}
    assert [statuses[q["example_id"]] for q in in_cell] == ["approved"] + ["surplus"] * (
        len(in_cell) - 1
    )
    assert set(statuses.values()) == {"approved", "surplus"}
    for plan in plans.values():
        assert plan.real + plan.synthetic == plan.target and plan.deficit == 0
    f = funnel[(key.slice, key.label)]
    assert f["held"] == 0 and f["surplus"] >= len(in_cell) - 1


@pytest.mark.parametrize("tone_in_schema", [False, True])
def test_an_edit_of_a_named_slice_row_keeps_its_slice_fields(tmp_path, sim, tone_in_schema):
    """The bundled config's `urgent` slice stamps `tone = "urgent"` on its rows. An edit
    is checked against the schema as the row was when generated: the slice's field is
    not an unknown field, and when the schema declares it too it is not a missing one."""
    from synth.config import load_config
    from synth.scaffold import init_project

    init_project(tmp_path)
    path = tmp_path / "config.toml"
    text = path.read_text().replace('base_url = ""', f'base_url = "{sim.base_url}"', 1)
    if tone_in_schema:
        text = text.replace(
            "fields.label = {",
            'fields.tone = { type = "string", max_length = 40 }\nfields.label = {',
            1,
        )
        seeds = tmp_path / "seeds" / "banking.jsonl"
        rows = [json.loads(line) for line in seeds.read_text().splitlines()]
        write_jsonl(seeds, [{**r, "tone": "calm"} for r in rows])
    path.write_text(text)
    config = load_config(path)
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(tmp_path / "seeds" / "banking.jsonl", config).seeds)
    assert run(config).status == "finished"
    with Store(config.db_path) as store:
        enroll(store, config.review)
        urgent = [q["example_id"] for q in store.reviews.queue() if q["slice"] == "urgent"]
        assert len(urgent) >= 2
        first, second = urgent[:2]
        with pytest.raises(ReviewError, match="fails the schema filter: too_short"):
            decide(store, config, first, "ana", "edit", text="help")
        edited = "HELP my card is gone, block it right now please!!"
        assert decide(store, config, first, "ana", "edit", text=edited)
        assert decide(store, config, second, "ana", "approve")
        [row] = store.examples.by_id([first])
    assert row["source"] == "edited" and row["status"] == "approved"
    assert row["data"]["tone"] == "urgent" and row["data"]["text"] == edited
