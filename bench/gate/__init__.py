"""The regression gate: compare two runs, A/B two revisions, and the validation of both."""
