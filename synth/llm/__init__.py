"""The OpenAI-compatible client, and the simulator that stands in for an endpoint."""
