"""synth audit, freeze, versions, diff, leakage and export --version through the CLI."""

from __future__ import annotations

import json

from test_cli import invoke


def test_freeze_versions_diff_export_and_audit_through_the_cli(sim_project, sim, tmp_path):
    sim_project.write_config(
        base_url=sim.base_url,
        extra="""
        [export.chat]
        system = "Name the intent of the message."
        user = "Message: {text}"
        """,
    )
    assert invoke(sim_project, "seeds", "import", str(sim_project.seeds)).exit_code == 0
    assert invoke(sim_project, "run", "--quiet").exit_code == 0

    frozen = invoke(sim_project, "freeze", "v1")
    assert frozen.exit_code == 0, frozen.output
    assert "version v1: 20 rows" in frozen.output and "leakage check: clean" in frozen.output
    again = invoke(sim_project, "freeze", "v1")
    assert again.exit_code == 1 and "version 'v1': exists" in again.output
    assert invoke(sim_project, "freeze", "v2").exit_code == 0

    listed = invoke(sim_project, "versions")
    assert listed.exit_code == 0 and listed.output.count("20 rows") == 2
    versions = json.loads(invoke(sim_project, "versions", "--json").output)
    assert [v["name"] for v in versions] == ["v1", "v2"]
    assert versions[0]["sha"] == versions[1]["sha"]  # same content, same address
    assert sum(versions[0]["splits"].values()) == 20

    diff = invoke(sim_project, "diff", "v1", "v2")
    assert (
        diff.exit_code == 0
        and "0 added, 0 removed, 0 changed, 0 moved split, 20 unchanged" in diff.output
    )
    assert invoke(sim_project, "leakage", "v1").exit_code == 0

    out = tmp_path / "train.jsonl"
    exported = invoke(
        sim_project, "export", "--version", "v1", "--split", "train", "--out", str(out)
    )
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["provenance"]["split"] == "train" for r in rows)
    assert len(rows) == versions[0]["splits"]["train"]
    assert (tmp_path / "train.jsonl.manifest.json").exists()
    chat = tmp_path / "chat.jsonl"
    assert (
        invoke(
            sim_project, "export", "--version", "v1", "--format", "chat", "--out", str(chat)
        ).exit_code
        == 0
    )
    first = json.loads(chat.read_text().splitlines()[0])["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[0]["content"] == "Name the intent of the message."
    assert first[1]["content"].startswith("Message: ")
    csv_out = tmp_path / "all.csv"
    assert (
        invoke(
            sim_project, "export", "--version", "v1", "--format", "csv", "--out", str(csv_out)
        ).exit_code
        == 0
    )
    assert csv_out.read_text().splitlines()[0].startswith("text,label,")
    no_version = invoke(sim_project, "export", "--split", "test", "--out", str(out))
    assert no_version.exit_code == 2 and "--split needs --version" in no_version.output
    unknown = invoke(sim_project, "export", "--version", "v9", "--out", str(out))
    assert unknown.exit_code == 1 and "version 'v9': no such version" in unknown.output

    audit = invoke(sim_project, "audit")
    assert audit.exit_code == 0 and "funnel: generated" in audit.output
    report = json.loads(invoke(sim_project, "audit", "--json").output)
    assert report["totals"]["rows"] == 20 and report["totals"]["real"] == 7
    html = tmp_path / "audit.html"
    assert invoke(sim_project, "audit", "--html", str(html)).exit_code == 0
    assert "<svg" in html.read_text() and "http" not in html.read_text().replace("http-equiv", "")
    tagged = json.loads(invoke(sim_project, "audit", str(out), "--json").output)
    assert [e["tag"] for e in tagged["items"]] == [r["provenance"]["source"] for r in rows]
    printed = invoke(sim_project, "audit", str(csv_out))
    assert printed.exit_code == 0
    # real, synthetic, edited, unknown: every row of the export is found in the store.
    assert printed.output.strip().splitlines()[-1].split() == ["total", "7", "13", "0", "0"]
    # Each row's line says where its stored row stands, as --json does.
    by_line = {line.split("\t")[0]: line.split("\t") for line in printed.output.splitlines()}
    as_json = json.loads(invoke(sim_project, "audit", str(csv_out), "--json").output)
    for e in as_json["items"]:
        assert by_line[str(e["line"])][3:5] == [e["id"], e["status"]]
    assert {e["status"] for e in as_json["items"]} >= {"accepted"}


def test_a_bad_chat_template_names_the_key(sim_project, sim, tmp_path):
    sim_project.write_config(base_url=sim.base_url, extra='[export.chat]\nuser = "{body}"\n')
    assert invoke(sim_project, "seeds", "import", str(sim_project.seeds)).exit_code == 0
    result = invoke(sim_project, "export", "--format", "chat", "--out", str(tmp_path / "c.jsonl"))
    assert result.exit_code == 1
    assert "config.toml: export.chat.user: {body} is not a field" in result.output
    assert not (tmp_path / "c.jsonl").exists()


def test_split_fractions_must_sum_to_one(project):
    project.write_config(extra="[splits]\ntrain = 0.9\nvalidation = 0.1\ntest = 0.1\n")
    result = invoke(project, "versions")
    assert result.exit_code == 1 and "config.toml: splits:" in result.output
    assert "must be 1" in result.output
