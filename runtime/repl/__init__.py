"""The free-form `rlm` step: sandboxed REPL interpreter and the dspy.RLM-based module."""
