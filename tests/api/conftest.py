"""API tests: fixtures are in tests/conftest.py."""
