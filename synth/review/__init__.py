"""Human review: which rows go to people, and what they decided.

sample.py       the stratified sample a run sends to review
queue.py        the queue: who reviews what next, recording decisions
stats.py        reviewer-vs-reviewer kappa, reject shares, flagged cells
app.py          the review web page (`synth review serve`)
gate.py         what guards it: session header, Host and Origin, body limit, headers
terminal.py     the same decisions in a terminal (`synth review next`)
interchange.py  Label Studio and Argilla files, out and back in
"""

from __future__ import annotations

from synth.errors import SynthError


class ReviewError(SynthError):
    """A review that cannot be recorded, or a review file that cannot be read;
    ``where`` names the row, the file and task, or the option."""
