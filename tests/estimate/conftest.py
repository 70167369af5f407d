"""The estimate tests run recipes with the typed test LM of the observability tests."""

from tests.observe.conftest import typed_test_lm  # noqa: F401 - a fixture, shared
