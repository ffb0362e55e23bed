"""The production path to an OpenAI-compatible endpoint: the online client, its rate
limits, and the Batch API client. The simulator that stands in for an endpoint in the
demo, the tests and the benchmarks is ``synth.sim``."""
