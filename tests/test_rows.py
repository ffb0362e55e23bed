"""Looking at rows: `synth rows` to find them, `synth show` for one row's story."""

from __future__ import annotations

import json

from click.testing import CliRunner

from synth.cli import cli


def invoke(project, *args):
    result = CliRunner().invoke(cli, ["--config", str(project.config_path), *args])
    return result


def _run(project, sim):
    sim.configure(p_exact_dup=0.3)
    assert invoke(project, "seeds", "import", str(project.seeds)).exit_code == 0
    ran = invoke(project, "run", "--quiet")
    assert ran.exit_code == 0, ran.output


def test_rows_lists_and_filters_what_the_store_holds(sim_project, sim):
    _run(sim_project, sim)
    everything = json.loads(invoke(sim_project, "rows", "--json", "--limit", "1000").output)
    rows = everything["rows"]
    assert everything["total"] == len(rows) > 20
    assert {r["source"] for r in rows} == {"real", "synthetic"}

    real = json.loads(invoke(sim_project, "rows", "--json", "--source", "real").output)
    assert real["total"] == 7 and all(r["source"] == "real" for r in real["rows"])

    cell = json.loads(
        invoke(sim_project, "rows", "--json", "--cell", "default/card_arrival").output
    )
    assert cell["rows"] and all(
        (r["slice"], r["label"]) == ("default", "card_arrival") for r in cell["rows"]
    )

    dups = json.loads(
        invoke(sim_project, "rows", "--json", "--filter", "exact_dedup", "--limit", "1000").output
    )
    assert dups["total"] > 0
    assert all(
        r["status"] == "rejected" and r["why"].startswith("exact_dedup:") for r in dups["rows"]
    )
    by_reason = json.loads(invoke(sim_project, "rows", "--json", "--reason", "exact_dup").output)
    assert by_reason["total"] == dups["total"]
    kept = json.loads(
        invoke(
            sim_project,
            "rows",
            "--json",
            "--source",
            "synthetic",
            "--status",
            "accepted",
            "--status",
            "review_pending",
        ).output
    )
    # 13 accepted, some of them sampled for review; nothing else is pending here.
    assert kept["total"] == 13
    assert {r["status"] for r in kept["rows"]} == {"accepted", "review_pending"}

    text = invoke(sim_project, "rows", "--filter", "exact_dedup", "--limit", "2")
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert lines[0].startswith(dups["rows"][0]["id"]) and "rejected" in lines[0]
    assert lines[1].strip().startswith("exact_dedup: exact_dup")
    assert lines[-1] == f"2 of {dups['total']} matching rows shown (--limit to see more)"


def test_rows_refuses_a_bad_filter_in_one_line(project):
    bad = invoke(project, "rows", "--status", "acepted")
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: --status: 'acepted' is not one of accepted, rejected")
    cell = invoke(project, "rows", "--cell", "card_arrival")
    assert cell.exit_code == 1 and "--cell: 'card_arrival' is not SLICE/LABEL" in cell.output


def test_show_prints_the_seeds_a_row_was_made_from(sim_project, sim):
    _run(sim_project, sim)
    synthetic = json.loads(
        invoke(
            sim_project, "rows", "--json", "--source", "synthetic", "--status", "accepted"
        ).output
    )["rows"][0]
    shown = invoke(sim_project, "show", synthetic["id"])
    assert shown.exit_code == 0
    as_json = json.loads(invoke(sim_project, "show", synthetic["id"], "--json").output)
    assert as_json["parent_ids"] and len(as_json["parents"]) == len(as_json["parent_ids"])
    lines = shown.output.splitlines()
    made_from = lines.index("made from:")
    for i, parent in enumerate(as_json["parents"]):
        assert lines[made_from + 1 + i] == (
            f"  {parent['id']}  {parent['slice']}/{parent['label']}, {parent['origin']}:"
            f" {parent['text']}"
        )
    # The seeds are real rows of the seed file, named by file and line.
    assert all(p["source"] == "real" and ".jsonl:" in p["origin"] for p in as_json["parents"])
