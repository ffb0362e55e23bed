"""config.toml: the one place settings are read.

Precedence, highest first: a CLI flag > config.toml > the defaults written here.
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` work as the openai package defines them:
``llm.api_key_env`` names the variable that holds the key (the key itself never sits
in the file or the store) and an empty ``llm.base_url`` falls back to
``OPENAI_BASE_URL``, then to OpenAI.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from synth.errors import ConfigError, not_utf8
from synth.filters import FilterContext, FilterSpec
from synth.messages import text_of
from synth.records import canonical_json, sha256_text

DEFAULT_CONFIG = "config.toml"
OPENAI_URL = "https://api.openai.com/v1"
# The cell name of a schema whose cells are its slices alone (no cell fields).
WHOLE_SLICE = "all"
# Joins the values of several cell fields into a cell's name: "open_qa+es".
CELL_JOIN = "+"


class Section(BaseModel):
    # strict: `target = false` is a mistake, not 0; TOML's types are the types meant.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class ProjectSettings(Section):
    name: str = "synth"
    db: str = "synth.db"  # relative to the folder config.toml is in
    # Templates and rubrics go into prompts and the store, so by default they must be
    # files inside the project folder (config.toml's): a config from elsewhere cannot
    # send /proc/self/environ or ~/.ssh to an endpoint. True lifts that.
    outside_templates: bool = False


class Price(Section):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    # Prompt tokens the provider served from its prompt cache (its
    # usage.prompt_tokens_details.cached_tokens) are billed at a fraction of input;
    # None: at input, for providers that bill them whole or do not cache.
    cached_input: float | None = Field(default=None, ge=0)

    @property
    def cached(self) -> float:
        """USD per million cached prompt tokens."""
        return self.input if self.cached_input is None else self.cached_input


class Since(Section):
    """A section that gained keys after stores were first written: each new key is
    left out of the stored config while it holds its default, so a config written
    before it keeps its sha (and an interrupted run of it resumes as the same run)."""

    _since: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        for key, default in self._since.items():
            if out.get(key) == default:
                del out[key]
        return out


class LLMSettings(Since):
    _since: ClassVar[dict[str, Any]] = {"base_urls": [], "cooldown_s": 30.0}

    model: str = "gpt-4o-mini"
    base_url: str = ""  # empty: OPENAI_BASE_URL, then api.openai.com
    # Several endpoints serving the same model, instead of base_url: each attempt goes
    # to the one with the fewest requests in flight (synth.llm.endpoints).
    base_urls: list[str] = Field(default_factory=list)
    # Seconds an endpoint that failed (no connection, a timeout, a 5xx) is put aside
    # while the others take its calls.
    cooldown_s: float = Field(default=30.0, ge=0)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int = Field(default=1024, gt=0)
    max_concurrency: int = Field(default=16, gt=0)
    rpm: int = Field(default=0, ge=0)  # requests per minute; 0 = no limit
    tpm: int = Field(default=0, ge=0)  # tokens per minute; 0 = no limit
    # An attempt is cut off after idle_timeout seconds with nothing received once the
    # server has begun to answer, or after timeout + max_tokens / min_tokens_per_s
    # seconds in all (queueing at the server included): a slow server that is writing
    # tokens is never cut off, a stuck one is within idle_timeout. The defaults suit
    # hosted APIs (tens of tokens/s) and CPU servers down to 1 token/s per request (a
    # 2-core machine shared by 4 slots and other work); the total is only a backstop
    # for a server that never begins to answer.
    timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=60.0, gt=0)
    min_tokens_per_s: float = Field(default=1.0, gt=0)
    # Replies come as server-sent events, so progress can be seen; false asks for the
    # whole reply at once (for a server that refuses streaming): then only the total
    # limit applies.
    stream: bool = True
    # Tokens a prompt and its reply share on the server; None: what the server says
    # (llama.cpp's /props, vLLM's /v1/models), else unknown.
    context_tokens: int | None = Field(default=None, gt=0)
    retries: int = Field(default=5, ge=0)  # attempts after the first
    # json_schema: OpenAI structured outputs; json_object: JSON mode; none: prompt only.
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    # Whether the JSON schema sent carries the schema's string lengths (minLength,
    # maxLength), which servers that constrain decoding (llama.cpp, vLLM) enforce, so
    # a runaway text stops at its limit. OpenAI's strict mode refuses them: "auto"
    # sends them to every endpoint but api.openai.com.
    schema_lengths: Literal["auto", "always", "never"] = "auto"
    # online: one request per call, answers at once. batch: the Batch API (/v1/files +
    # /v1/batches), half the price, answers within the completion window.
    mode: Literal["online", "batch"] = "online"
    batch_discount: float = Field(default=0.5, gt=0, le=1)  # price multiplier in batch mode
    batch_poll_s: float = Field(default=30.0, gt=0)  # how often a batch's status is checked
    batch_window: str = "24h"  # the completion_window asked for
    # On a storm of 429s, halve the requests in flight; add one back per run of
    # successes, up to max_concurrency.
    adaptive_concurrency: bool = True
    prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way_to_name_endpoints(self) -> LLMSettings:
        if self.base_url and self.base_urls:
            raise ValueError("set llm.base_url or llm.base_urls, not both")
        return self

    def price(self, model: str) -> Price | None:
        return self.prices.get(model)

    def attempt_limit(self, max_tokens: int | None = None) -> float:
        """Seconds an attempt may take in all, for a reply of up to ``max_tokens``."""
        tokens = self.max_tokens if max_tokens is None else max_tokens
        return self.timeout + tokens / self.min_tokens_per_s


class FieldSpec(Section):
    # "messages": a dialogue, a list of {role, content} turns (synth.messages).
    type: Literal["string", "integer", "number", "boolean", "messages"] = "string"
    description: str = ""
    # Characters of a string; turns of a dialogue (its system message not counted).
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, gt=0)


class SchemaSettings(Since):
    """The fields of one example; which one is the text, which (if any) the label, and
    which define the cells a quota is kept per (besides the slice).

    A classification schema's cells are its labels. ``label = ""`` says there is no
    label (instruction data, Q&A, chat); ``cells`` then names the fields whose values
    make the cells (``["task_type"]``, ``["task_type", "language"]``) or none, for one
    cell per slice (named ``all``). A cell of several fields is named by their values
    joined with ``+`` (``open_qa+es``): that name is what ``labels``, ``targets.counts``
    and a slice's ``labels`` list, and what the store and reports show."""

    _since: ClassVar[dict[str, Any]] = {"cells": None, "optional": []}

    text: str = "text"
    label: str = "label"  # "": no label field
    fields: dict[str, FieldSpec] = Field(
        default_factory=lambda: {"text": FieldSpec(), "label": FieldSpec()}
    )
    # Fields whose values define the cells; None: the label's (none without a label).
    cells: list[str] | None = None
    # Fields a seed may leave out or empty (Alpaca's "input"); generated rows always
    # carry them, empty where nothing fits.
    optional: list[str] = Field(default_factory=list)
    # The cell set (the label set, for classification). Empty: the cells found in the
    # seeds and named in targets/slices.
    labels: list[str] = Field(default_factory=list)
    label_descriptions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _roles_are_fields(self) -> SchemaSettings:
        roles = [("text", self.text)] + ([("label", self.label)] if self.label else [])
        for role, name in roles:
            if name not in self.fields:
                raise ValueError(f"{role} field {name!r} is not one of fields {list(self.fields)}")
        for name in self.optional:
            if name not in self.fields:
                raise ValueError(
                    f"optional field {name!r} is not one of fields {list(self.fields)}"
                )
            if name in (self.text, self.label) or name in (self.cells or []):
                raise ValueError(f"optional field {name!r} is the text, the label or a cell field")
        for name in self.cells or []:
            if name not in self.fields:
                raise ValueError(f"cell field {name!r} is not one of fields {list(self.fields)}")
            if name == self.text:
                raise ValueError(f"cell field {name!r} is the text field")
        if self.label and self.cells is not None and self.cells != [self.label]:
            raise ValueError(
                f"a schema with a label has its labels as cells (cells = [{self.label!r}]);"
                ' set label = "" to make cells of other fields'
            )
        if self.cells is not None and len(set(self.cells)) != len(self.cells):
            raise ValueError("cells names a field twice")
        return self

    @property
    def cell_fields(self) -> list[str]:
        if self.cells is not None:
            return list(self.cells)
        return [self.label] if self.label else []

    @property
    def generated(self) -> list[str]:
        """The fields the model writes: all but the cell fields synth sets itself (a
        label is written, pinned to the cell's)."""
        fixed = set(self.cell_fields) - {self.label}
        return [name for name in self.fields if name not in fixed]

    def text_of(self, data: dict[str, Any]) -> str:
        """The text the filters compare: the text field, or a dialogue's user turns."""
        return text_of(data, self.text)

    def cell_of(self, data: dict[str, Any]) -> str:
        """The name of the cell a row's fields put it in (besides its slice)."""
        names = self.cell_fields
        if not names:
            return WHOLE_SLICE
        values = [str(data[name]) for name in names]
        if len(values) > 1:
            for name, value in zip(names, values, strict=True):
                if CELL_JOIN in value:
                    raise ValueError(
                        f"field {name!r} is a cell field and cannot hold {CELL_JOIN!r}"
                        f" (cell names join values with it): {value!r}"
                    )
        return CELL_JOIN.join(values)

    def cell_values(self, name: str) -> dict[str, str]:
        """The cell fields' values of a cell, from its name (``cell_of`` reversed)."""
        names = self.cell_fields
        if not names:
            return {}
        if len(names) == 1:
            return {names[0]: name}
        return dict(zip(names, name.split(CELL_JOIN, len(names) - 1), strict=False))


MatchValue = str | int | float | bool | list[str | int | float | bool]


class SliceSettings(Section):
    """A named slice: the seeds that match it, what it is about, and its target."""

    name: str = Field(min_length=1)
    description: str = ""
    # Seed fields that must equal these values (a list: any of them). Generated rows
    # of the slice carry these values, so they match it too.
    match: dict[str, MatchValue] = Field(default_factory=dict)
    target: int = Field(ge=0)
    labels: list[str] = Field(default_factory=list)  # empty: every label

    @model_validator(mode="after")
    def _not_default(self) -> SliceSettings:
        if self.name == "default":
            raise ValueError("'default' is the slice of seeds that match no named slice")
        return self


class TargetSettings(Section):
    """Class balance of the default slice."""

    # match_max: every label up to the largest label's count of real rows.
    # uniform: every label up to per_label. explicit: counts per label (others: none).
    balance: Literal["match_max", "uniform", "explicit", "none"] = "match_max"
    per_label: int | None = Field(default=None, ge=0)
    counts: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mode_has_its_numbers(self) -> TargetSettings:
        if self.balance == "uniform" and self.per_label is None:
            raise ValueError("balance = 'uniform' needs per_label")
        if self.balance == "explicit" and not self.counts:
            raise ValueError("balance = 'explicit' needs a counts table")
        return self


class GenerateSettings(Since):
    _since: ClassVar[dict[str, Any]] = {"max_cost_per_cell_usd": None, "attributes": {}}

    template: str = "prompts/generate/classify.md.j2"
    few_shot: int = Field(default=4, ge=0)  # seeds shown per call, from the same cell
    contrast: int = Field(default=2, ge=0)  # seeds of other labels shown as "not this"
    per_call: int = Field(default=5, gt=0)  # examples asked for per call
    max_calls: int | None = Field(default=None, gt=0)  # per run
    max_cost_usd: float | None = Field(default=None, gt=0)  # per run
    # A cell whose calls (its judge calls included) cost this much is stopped, and
    # only that cell: its rows are too dear for more of the same to be worth it.
    max_cost_per_cell_usd: float | None = Field(default=None, gt=0)
    # Calls planned ahead of the replies filtered so far, beyond max_concurrency: the
    # slack that keeps the wire full while later replies wait for an earlier one
    # (a retry after Retry-After), since replies are filtered in plan order.
    max_calls_per_batch: int = Field(default=1024, gt=0)
    # A cell that gets nothing accepted for this many planning steps in a row (which
    # asked for at least this many times per_call examples) is stopped: its template
    # or seeds need a look, and more calls would only spend money.
    max_idle_batches: int = Field(default=4, gt=0)
    seed: int = 0
    # An attribute grid (persona x difficulty x ...): each call draws one combination,
    # shown in its prompt and stored on every row it makes, so rows spread over the
    # grid by construction rather than by the luck of sampling. Combinations come in an
    # order shuffled by `seed` and are cycled per cell, call by call, so every
    # combination gets a call before any gets a second.
    attributes: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _attributes_have_values(self) -> GenerateSettings:
        for name, values in self.attributes.items():
            if len(set(values)) != len(values):
                raise ValueError(f"attribute {name!r} lists a value twice")
        return self


class ReviewSettings(Section):
    fraction: float = Field(default=0.2, ge=0, le=1)
    min_per_cell: int = Field(default=1, ge=0)
    seed: int = 0
    # The share of queued rows, per cell, that two reviewers see: their pairs give
    # reviewer agreement (Cohen's kappa, `synth review stats`).
    double_review: float = Field(default=0.1, ge=0, le=1)
    # A cell whose reviewers reject more than this share of its reviews (once it has
    # flag_min_reviews of them) is flagged: `synth run` generates nothing for it until
    # `synth review ack CELL`. So many rejections point at a template or seed problem.
    max_reject_share: float = Field(default=0.3, ge=0, le=1)
    flag_min_reviews: int = Field(default=10, gt=0)
    # The tags a reviewer picks from when rejecting (keys 1-9 on the review page).
    reasons: list[str] = Field(
        default_factory=lambda: [
            "off_label",
            "wrong_slice",
            "unnatural",
            "near_duplicate",
            "pii",
            "factually_wrong",
            "other",
        ],
        min_length=1,
    )


class SplitSettings(Section):
    """train / validation / test, assigned at ``synth freeze`` by group.

    Groups are near-duplicate clusters (word ``n``-gram Jaccard at or above
    ``threshold``, the near-dedup filter's measure): a cluster never crosses splits.
    A synthetic row goes to the split of the seeds it was made from; when they fall
    in several, to the most held-out of them (test, then validation), so nothing
    derived from a held-out seed is trained on.
    """

    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    seed: int = 0  # which groups land where; the same seed gives the same splits
    threshold: float = Field(default=0.5, gt=0, le=1)
    n: int = Field(default=2, ge=1, le=16)

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, not {total:g}")
        return self


class ChatMapping(Since):
    """The chat fine-tuning format: each turn a ``str.format`` template over the
    example's fields (``"{text}"``); an empty ``system`` leaves the turn out.
    ``messages`` names a dialogue field to export as it is instead (``system`` then
    goes first when the dialogue has no system message of its own)."""

    _since: ClassVar[dict[str, Any]] = {"messages": ""}

    messages: str = ""
    system: str = ""
    user: str = "{text}"
    assistant: str = "{label}"


class AlpacaMapping(Section):
    """The Alpaca format (``instruction``, ``input``, ``output``): each a
    ``str.format`` template over the example's fields."""

    instruction: str = "{instruction}"
    input: str = "{input}"
    output: str = "{response}"


class DpoMapping(Section):
    """The DPO format's ``prompt``: a ``str.format`` template over the example's
    fields (``chosen`` and ``rejected`` are the two responses as they are)."""

    prompt: str = "{instruction}\n\n{input}"


class ExportSettings(Since):
    _since: ClassVar[dict[str, Any]] = {
        "alpaca": AlpacaMapping().model_dump(),
        "dpo": DpoMapping().model_dump(),
    }

    chat: ChatMapping = Field(default_factory=ChatMapping)
    alpaca: AlpacaMapping = Field(default_factory=AlpacaMapping)
    dpo: DpoMapping = Field(default_factory=DpoMapping)


class PairSettings(Section):
    """Preference pairs: more responses to the prompt of every accepted row, judged by
    the chain's rubric, the best and the worst of them a (chosen, rejected) pair.

    Asked for once every quota is met, so only prompts already in the dataset are
    paid for, and never seen by dedup or diversity (each repeats its row's prompt on
    purpose) nor counted toward a quota: the dataset's rows stay what they were."""

    # Responses per prompt, the row's own included: 2 asks for one more. 0: no pairs.
    responses: int = Field(default=0, ge=0)
    template: str = ""  # the request for one more response to a row's prompt
    field: str = "response"  # the field the responses fill; the other fields are the prompt
    # Pairs whose judge scores (the rubric's weighted mean, 1-5) differ by less are
    # kept in the store and left out of `synth export --format dpo`: a near tie says
    # little about which response is better, and trains on the judge's noise.
    min_gap: float = Field(default=0.5, ge=0)

    @model_validator(mode="after")
    def _a_pair_has_two_sides(self) -> PairSettings:
        if self.responses == 1:
            raise ValueError("a pair needs 2 responses or more (0: no pairs)")
        if self.responses and not self.template:
            raise ValueError("pairs need a template asking for one more response")
        return self


class RaySettings(Section):
    """Where ``synth filter --ray`` runs: ``address`` of a Ray cluster ("" starts a
    local Ray on this machine, or uses ``RAY_ADDRESS``); ``num_cpus`` of that local
    Ray (None: all of them)."""

    address: str = ""
    num_cpus: int | None = Field(default=None, gt=0)


class Config(Since):
    _since: ClassVar[dict[str, Any]] = {"pairs": PairSettings().model_dump()}

    project: ProjectSettings = Field(default_factory=ProjectSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    data_schema: SchemaSettings = Field(default_factory=SchemaSettings, alias="schema")
    slices: list[SliceSettings] = Field(default_factory=list)
    targets: TargetSettings = Field(default_factory=TargetSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    filters: list[FilterSpec] = Field(default_factory=list)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    splits: SplitSettings = Field(default_factory=SplitSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    pairs: PairSettings = Field(default_factory=PairSettings)
    # Where the work runs, not what is decided: left out of the config's sha (and the
    # config stored with a run), so a run on a laptop and on a cluster compare alike.
    ray: RaySettings = Field(default_factory=RaySettings, exclude=True)

    # Where the file was read from; relative paths in it resolve against its folder.
    source: Path = Field(default=Path(DEFAULT_CONFIG), exclude=True)

    @model_validator(mode="after")
    def _slices_are_unique(self) -> Config:
        names = [s.name for s in self.slices]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"slice names must be unique: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _attributes_are_not_fields(self) -> Config:
        for name in self.generate.attributes:
            if name in self.data_schema.fields:
                # A field is the model's to write (or, for a cell field, the cell's to
                # fix); an attribute is synth's, drawn from the grid.
                raise ConfigError(
                    f"{self.source.name}: generate.attributes.{name}",
                    f"{name!r} is a field of [schema]; an attribute is set by synth and"
                    " stored beside the fields (to keep a quota per value, make it a cell"
                    " field instead)",
                )
        return self

    @model_validator(mode="after")
    def _pairs_have_a_response_and_a_judge(self) -> Config:
        pairs, schema = self.pairs, self.data_schema
        if not pairs.responses:
            return self
        where = f"{self.source.name}: pairs.field"
        spec = schema.fields.get(pairs.field)
        if spec is None or spec.type != "string":
            raise ConfigError(where, f"{pairs.field!r} is not a string field of [schema]")
        if pairs.field not in schema.generated or pairs.field in (schema.text, schema.label):
            raise ConfigError(
                where, f"{pairs.field!r} is the text, the label or a cell field, not a response"
            )
        if not any(f.kind == "rubric" for f in self.filters):
            raise ConfigError(
                f"{self.source.name}: pairs.responses",
                "pairs are ranked by the rubric judge: the chain has no rubric filter",
            )
        return self

    @model_validator(mode="after")
    def _paths_are_paths(self) -> Config:
        for key, value in self._paths():
            if "\x00" in value:
                raise ConfigError(
                    f"{self.source.name}: {key}", "a path cannot hold a NUL character"
                )
        if self.project.outside_templates:
            return self
        root = self.root.resolve()
        for key, value in self._paths():
            if key == "project.db":
                continue
            found = self.resolve(value).resolve()  # symlinks followed: where it really is
            if not found.is_relative_to(root):
                raise ConfigError(
                    f"{self.source.name}: {key}",
                    f"{value} is outside the project folder {root}; templates and rubrics are"
                    " read from inside it (set project.outside_templates = true to allow"
                    " others)",
                )
        return self

    def _paths(self) -> list[tuple[str, str]]:
        """(dotted key, path) of every file the config names that goes into prompts,
        and of the store."""
        out = [("project.db", self.project.db), ("generate.template", self.generate.template)]
        if self.pairs.template:
            out.append(("pairs.template", self.pairs.template))
        for i, f in enumerate(self.filters):
            for name in ("rubric", "template", "label_template"):
                if isinstance(getattr(f, name, None), str):
                    out.append((f"filters[{i}].{name}", getattr(f, name)))
        return out

    @property
    def root(self) -> Path:
        return self.source.parent

    def resolve(self, path: str) -> Path:
        p = Path(path)
        with contextlib.suppress(RuntimeError):  # ~user of no such user: taken as written
            p = p.expanduser()
        return p if p.is_absolute() else self.root / p

    def filter_context(self, labels: Sequence[str] | None = None) -> FilterContext:
        """What the filters get from the project besides their own settings; ``labels``
        when the run knows more than the schema names (labels only seeds have)."""
        schema = self.data_schema
        return FilterContext(
            root=self.root,
            text_field=schema.text,
            label_field=schema.label,
            # The fields a candidate carries: a cell field synth sets is not judged.
            fields={name: schema.fields[name] for name in schema.generated},
            optional=frozenset(schema.optional),
            labels=tuple(labels or schema.labels),
        )

    @property
    def db_path(self) -> Path:
        return self.resolve(self.project.db)

    def as_json(self) -> str:
        return canonical_json(self.model_dump(mode="json", by_alias=True))

    @property
    def sha(self) -> str:
        return sha256_text(self.as_json())

    def with_llm(self, **changes: Any) -> Config:
        return self.model_copy(update={"llm": self.llm.model_copy(update=changes)})

    def endpoint(self) -> str:
        """The base URL requests go to: ``llm.base_url`` (the first of
        ``llm.base_urls``), else ``OPENAI_BASE_URL``, else OpenAI's, as the openai
        package resolves it."""
        first = self.llm.base_urls[0] if self.llm.base_urls else ""
        return self.llm.base_url or first or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL

    def api_key(self) -> str:
        """The key from the environment; a loopback endpoint needs none."""
        key = os.environ.get(self.llm.api_key_env, "")
        if key:
            return key
        base = self.endpoint()
        if any(h in base for h in ("://127.", "://localhost", "://[::1]")):
            return "unused"
        raise ConfigError(
            f"{self.source.name}: llm.api_key_env",
            f"environment variable {self.llm.api_key_env} is not set",
        )


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, then SYNTH_CONFIG, then ./config.toml."""
    return Path(explicit or os.environ.get("SYNTH_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate config.toml; errors name the file and the dotted key."""
    path = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(path), "no such config file (pass --config or set SYNTH_CONFIG)"
        ) from None
    except UnicodeDecodeError as e:
        line, why = not_utf8(e)
        raise ConfigError(f"{path}:{line}", why) from None
    except OSError as e:
        raise ConfigError(str(path), e.strerror or str(e)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
    except ValueError as e:  # an integer past Python's 4,300 digits
        raise ConfigError(str(path), f"not valid TOML: {str(e).split(';')[0]}") from None
    except RecursionError:
        raise ConfigError(str(path), "not valid TOML: arrays or tables nested too deep") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    try:
        return Config.model_validate({**raw, "source": path.resolve()})
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"{path.name}: {dotted(first['loc'])}", first["msg"]) from None


def dotted(loc: tuple[int | str, ...]) -> str:
    """('filters', 1, 'near_dedup', 'threshold') -> 'filters[1].threshold'."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # pydantic puts the discriminator's value in the path of a tagged union member.
        if i >= 2 and parts[i - 2] == "filters" and isinstance(parts[i - 1], int):
            continue
        if part.startswith("function-after["):
            continue
        out += f".{part}" if out else part
    return out or "(top level)"
