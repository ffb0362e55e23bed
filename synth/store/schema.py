"""The store's schema: every table, created and changed only by a named migration.

Each migration runs once, in a transaction with the record that it ran
(``_sqlite_migrations``), so a store made by any earlier synth opens in a later one
with its rows intact. A schema change is a new migration, never an edit of an old one.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("synth")

# Statuses whose rows fill a cell's quota. A row sampled for review stays counted;
# one a filter sent to review counts only once a human approves it.
COUNTED = "(status IN ('accepted', 'approved') OR (status = 'review_pending' AND outcome = 'keep'))"


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,          -- running | finished | stopped | failed
            stop_reason TEXT,
            config_json TEXT NOT NULL,
            config_sha TEXT NOT NULL,
            pid INTEGER,
            resumes INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE templates (
            sha TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE llm_calls (
            id TEXT PRIMARY KEY,
            run_id TEXT REFERENCES runs(id),
            request_sha TEXT NOT NULL UNIQUE,
            purpose TEXT NOT NULL,         -- generate | judge
            slice TEXT,
            label TEXT,
            sample_index INTEGER,
            template TEXT,
            template_sha TEXT,
            model TEXT NOT NULL,
            params_json TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            parent_ids_json TEXT NOT NULL DEFAULT '[]',
            response_json TEXT,
            status TEXT NOT NULL,          -- pending | ok | invalid | failed
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            latency_ms REAL,
            processed INTEGER NOT NULL DEFAULT 0,  -- its examples are stored
            created_at TEXT NOT NULL,
            answered_at TEXT
        );
        CREATE INDEX llm_calls_cell ON llm_calls(slice, label);
        CREATE INDEX llm_calls_status ON llm_calls(status, processed);
        CREATE TABLE examples (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,          -- real | synthetic | edited
            slice TEXT NOT NULL,
            label TEXT NOT NULL,
            data_json TEXT NOT NULL,
            text TEXT NOT NULL,
            content_sha TEXT NOT NULL,
            status TEXT NOT NULL,          -- accepted | rejected | review_pending |
                                           -- approved | review_rejected | surplus
            outcome TEXT,                  -- the filter chain's verdict: keep | reject | review
            rejected_by TEXT,
            run_id TEXT REFERENCES runs(id),
            llm_call_id TEXT REFERENCES llm_calls(id),
            call_index INTEGER,
            template TEXT,
            template_sha TEXT,
            model TEXT,
            parent_ids_json TEXT NOT NULL DEFAULT '[]',
            origin TEXT,                   -- seeds: "file:line"
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX examples_cell ON examples(slice, label, status);
        CREATE INDEX examples_sha ON examples(content_sha);
        CREATE INDEX examples_call ON examples(llm_call_id);
        CREATE UNIQUE INDEX examples_real_content ON examples(content_sha) WHERE source = 'real';
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            filter TEXT NOT NULL,
            filter_version TEXT NOT NULL,
            verdict TEXT NOT NULL,         -- keep | reject | review
            score REAL,
            reason TEXT NOT NULL,
            run_id TEXT REFERENCES runs(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX decisions_example ON decisions(example_id);
        CREATE INDEX decisions_filter ON decisions(filter, verdict);
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            reviewer TEXT NOT NULL,
            verdict TEXT NOT NULL,         -- approve | reject
            edited_data_json TEXT,
            note TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX reviews_example ON reviews(example_id);
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            editor TEXT NOT NULL,          -- "filter:pii" or "reviewer:<name>"
            before_json TEXT NOT NULL,
            after_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX edits_example ON edits(example_id);
        """
    )


@migrations()
def m002_batches(db: sqlite_utils.Database) -> None:
    # One row per Batch API job: its id is recorded before the run waits on it, so a
    # killed run polls the same job again instead of paying for its calls twice.
    db.executescript(
        """
        CREATE TABLE llm_batches (
            id TEXT PRIMARY KEY,           -- the provider's batch id
            run_id TEXT REFERENCES runs(id),
            input_file_id TEXT NOT NULL,
            output_file_id TEXT,
            error_file_id TEXT,
            status TEXT NOT NULL,          -- the provider's last reported status, or lost
            call_ids_json TEXT NOT NULL,   -- llm_calls.id of every line, custom_id order
            request_counts_json TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT               -- set once its replies are stored; NULL: open
        );
        CREATE INDEX llm_batches_open ON llm_batches(finished_at);
        """
    )


@migrations()
def m003_judge_scores(db: sqlite_utils.Database) -> None:
    # The judge's per-criterion scores and rationales: one row per candidate x
    # criterion x judge sample (several samples or judge models may grade one row).
    db.executescript(
        """
        CREATE TABLE judge_scores (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            criterion TEXT NOT NULL,       -- a rubric criterion, or "label" for consistency
            score REAL,                    -- 1-5 on the rubric's anchored scale
            rationale TEXT NOT NULL DEFAULT '',
            judge_model TEXT NOT NULL,
            sample INTEGER NOT NULL DEFAULT 0,
            rubric TEXT NOT NULL,          -- the rubric file's name
            rubric_sha TEXT NOT NULL,
            llm_call_id TEXT REFERENCES llm_calls(id),
            run_id TEXT REFERENCES runs(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX judge_scores_example ON judge_scores(example_id);
        """
    )


@migrations()
def m004_review(db: sqlite_utils.Database) -> None:
    # The review queue: why each row is in it and how many reviewers it needs (two
    # for the double-review share, whose pairs give reviewer agreement). A review's
    # reason tag and where it was made (web page, terminal, an imported file) are
    # columns of reviews: every review has them, so they belong on its row.
    db.executescript(
        """
        CREATE TABLE review_items (
            example_id TEXT PRIMARY KEY REFERENCES examples(id),
            reason TEXT NOT NULL,          -- sampled | filter (a filter said review)
            reviews_needed INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        );
        ALTER TABLE reviews ADD COLUMN reason TEXT;   -- a reject's tag: off_label, ...
        ALTER TABLE reviews ADD COLUMN origin TEXT;   -- web | terminal | label-studio | argilla
        CREATE UNIQUE INDEX reviews_once ON reviews(example_id, reviewer);
        -- A cell flagged for its reviewers' rejections generates again once
        -- acknowledged; the reviews up to last_review_id are then set aside.
        CREATE TABLE review_acks (
            id INTEGER PRIMARY KEY,
            slice TEXT NOT NULL,
            label TEXT NOT NULL,
            last_review_id INTEGER NOT NULL,
            note TEXT,
            created_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m005_versions(db: sqlite_utils.Database) -> None:
    # Frozen dataset versions. Each item keeps the row's content and lineage as they
    # were at the freeze, so a later edit, review or status change never alters a
    # version or its exports; triggers refuse any change to a frozen row.
    db.executescript(
        """
        CREATE TABLE versions (
            name TEXT PRIMARY KEY,
            sha TEXT NOT NULL,             -- sha256 over sorted (id, content_sha, split)
            created_at TEXT NOT NULL,
            config_sha TEXT NOT NULL,
            rows INTEGER NOT NULL,
            manifest_json TEXT NOT NULL    -- the data card, written beside every export
        );
        CREATE TABLE version_items (
            version TEXT NOT NULL REFERENCES versions(name),
            example_id TEXT NOT NULL REFERENCES examples(id),
            position INTEGER NOT NULL,     -- export order
            split TEXT NOT NULL,           -- train | validation | test
            source TEXT NOT NULL,          -- real | synthetic | edited, at the freeze
            slice TEXT NOT NULL,
            label TEXT NOT NULL,
            status TEXT NOT NULL,
            data_json TEXT NOT NULL,
            text TEXT NOT NULL,
            content_sha TEXT NOT NULL,
            lineage_json TEXT NOT NULL,    -- run, model, template, parents, origin, call
            PRIMARY KEY (version, example_id)
        );
        CREATE INDEX version_items_sha ON version_items(content_sha);
        CREATE TRIGGER versions_frozen_update BEFORE UPDATE ON versions
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        CREATE TRIGGER versions_frozen_delete BEFORE DELETE ON versions
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        CREATE TRIGGER version_items_frozen_update BEFORE UPDATE ON version_items
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        CREATE TRIGGER version_items_frozen_delete BEFORE DELETE ON version_items
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        """
    )


# Rows that are in the dataset or waiting for a reviewer to say whether they will be:
# the dataset holds one real row per content, and these are the rows that rule is about.
LIVE = "status IN ('accepted', 'approved', 'review_pending')"


@migrations()
def m006_filter_runs(db: sqlite_utils.Database) -> None:
    # `synth filter` runs the chain over a file the user already has, under a run of
    # its own kind; input_json says which file and how (against the store or the file
    # alone, the source given to its rows, whether the judge ran). Its rows are stored
    # like any other, rejected ones included, so a real row a filter run rejected sits
    # beside the seed it duplicates: one real row per content now holds for the live
    # rows only (the dataset and the rows waiting for review), not for rejected ones.
    db.executescript(
        f"""
        ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'generate';  -- generate | filter
        ALTER TABLE runs ADD COLUMN input_json TEXT;
        DROP INDEX examples_real_content;
        CREATE UNIQUE INDEX examples_real_content ON examples(content_sha)
            WHERE source = 'real' AND {LIVE};
        """
    )


@migrations()
def m007_served_model_and_repairs(db: sqlite_utils.Database) -> None:
    # What a real server says it served can differ from the model asked for (a
    # local server answers with the file it loaded; an alias resolves to a dated
    # snapshot), and a reply read from another shape than the one asked for says
    # how it was mended: both belong beside the call they describe.
    db.executescript(
        """
        ALTER TABLE llm_calls ADD COLUMN served_model TEXT;  -- the reply's "model"
        ALTER TABLE llm_calls ADD COLUMN repairs_json TEXT;  -- e.g. ["code_fence"]; NULL: none
        """
    )


@migrations()
def m008_call_reasons(db: sqlite_utils.Database) -> None:
    # Why a call brought nothing usable, as one word of a small vocabulary
    # (synth.records.Unusable): reports count replies by it, and a reworded error
    # message must not split a count. Calls answered before it existed get the word
    # their message meant then (these texts are frozen here, as this step is).
    db.executescript(
        """
        ALTER TABLE llm_calls ADD COLUMN reason TEXT;  -- NULL while ok or pending
        UPDATE llm_calls SET reason = CASE
            WHEN error LIKE 'finish_reason=length%' THEN 'cut_off'
            WHEN error LIKE 'finish_reason=content_filter%' THEN 'content_filter'
            WHEN error LIKE 'not a chat completion%' OR error = 'empty reply'
                OR error LIKE 'no JSON in the reply%' THEN 'unparseable'
            WHEN error LIKE 'not sent%' THEN 'not_sent'
            WHEN error LIKE 'connection %' OR error LIKE 'host not found%'
                OR error LIKE 'cannot connect%' OR error LIKE 'timed out%'
                OR error LIKE 'APITimeoutError%' OR error LIKE 'APIConnectionError%'
                THEN 'connection'
            WHEN error LIKE 'HTTP %' THEN 'http_error'
            WHEN status = 'invalid' THEN 'schema_mismatch'
            ELSE 'failed' END
        WHERE status IN ('invalid', 'failed');
        """
    )


@migrations()
def m009_reply_limits_and_lost_attempts(db: sqlite_utils.Database) -> None:
    # A reply is stored up to a cap (synth.llm.reply.MAX_REPLY_CHARS): response_chars
    # says how long it was when it was cut. An attempt that left and got no reply (the
    # process killed, a timeout, a dropped connection) may still be billed by the
    # endpoint: each attempt adds its estimate to unanswered_* as it leaves and takes
    # it back when an answer comes, so what remains is what no reply accounts for.
    db.executescript(
        """
        ALTER TABLE llm_calls ADD COLUMN response_chars INTEGER;  -- NULL: stored whole
        ALTER TABLE llm_calls ADD COLUMN unanswered_attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE llm_calls ADD COLUMN unanswered_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE llm_calls ADD COLUMN unanswered_usd REAL NOT NULL DEFAULT 0;
        """
    )


@migrations()
def m010_pairs(db: sqlite_utils.Database) -> None:
    # Preference pairs: the best- and worst-judged of the responses to one accepted
    # row's prompt (the row's own and its alternatives, rows of status 'alternative'
    # whose parent is the row). One pair per prompt, made again when more responses
    # come; both sides are rows of examples, with their lineage and judge scores.
    # The calls that ask for alternatives are llm_calls of purpose 'respond'.
    db.executescript(
        """
        CREATE TABLE pairs (
            prompt_id TEXT PRIMARY KEY REFERENCES examples(id),
            chosen_id TEXT NOT NULL REFERENCES examples(id),
            rejected_id TEXT NOT NULL REFERENCES examples(id),
            chosen_score REAL NOT NULL,    -- the rubric's weighted mean, 1-5
            rejected_score REAL NOT NULL,
            gap REAL NOT NULL,             -- chosen_score - rejected_score
            responses INTEGER NOT NULL,    -- judged responses it was chosen from
            run_id TEXT REFERENCES runs(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX pairs_chosen ON pairs(chosen_id);
        CREATE INDEX pairs_rejected ON pairs(rejected_id);
        """
    )


@migrations()
def m011_cached_tokens(db: sqlite_utils.Database) -> None:
    # Providers bill prompt tokens served from their prompt cache (a prefix sent
    # before) at a fraction of the input price and say how many in
    # usage.prompt_tokens_details.cached_tokens. Both are parts of the call's
    # prompt_tokens and cost_usd, kept so that reports can split fresh from cached.
    db.executescript(
        """
        ALTER TABLE llm_calls ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE llm_calls ADD COLUMN cached_usd REAL NOT NULL DEFAULT 0;
        """
    )
