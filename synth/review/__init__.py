"""Human review: which rows go to people, and what they decided."""
