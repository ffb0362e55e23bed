"""The LLM judge: written rubrics, judge calls, and calibration against humans.

    rubric.py       rubric files (prompts/rubrics/*.toml): criteria with anchored 1-5
                    levels, weights, a pass threshold and a borderline band
    grading.py      judge requests, reply validation, retries, aggregation over
                    samples and judge models; label consistency
    calibration.py  Cohen's kappa between judge verdicts and human verdicts

The judge is the last filter of the chain (``kind = "rubric"``,
``synth/filters/rubric.py``): only candidates every cheap filter kept are sent to it.
"""
