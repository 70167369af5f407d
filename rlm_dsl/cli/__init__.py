"""The ``rlm`` command line: one Typer app (:mod:`rlm_dsl.cli.app`), one module per command."""
