"""Errors synth raises on bad input, each naming where the problem is.

    SynthError                 base class; ``where`` names the file, line or key
    ├── ConfigError            config.toml: filters[1].threshold: ...
    ├── SeedError              seeds/tickets.jsonl:17: ...
    ├── TemplateError          prompts/generate/x.md.j2:4: ...
    ├── EvalSetError           evals/gsm8k.jsonl:3: ...
    ├── StoreError             the store file: full disk, damaged, read-only, in use
    └── OutputError            an export or report could not be written (disk full)

The CLI turns a SynthError into a one-line message and exit code 2; nothing that was
already stored is changed by the operation that raised it.
"""

from __future__ import annotations


class SynthError(Exception):
    """A problem with the user's input, with the place it was found."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(SynthError):
    pass


class SeedError(SynthError):
    def __init__(self, where: str, message: str, problems: list[str] | None = None) -> None:
        super().__init__(where, message)
        self.problems = problems or []


class TemplateError(SynthError):
    pass


class EvalSetError(SynthError):
    pass


class StoreError(SynthError):
    pass


class OutputError(SynthError):
    pass


def not_utf8(error: UnicodeDecodeError) -> tuple[int, str]:
    """The line of a file's first undecodable byte, and what to say about it."""
    data = error.object if isinstance(error.object, bytes) else bytes(error.object)
    line = data[: error.start].count(b"\n") + 1
    return line, f"not UTF-8 text (byte 0x{data[error.start]:02x}): save it as UTF-8"
