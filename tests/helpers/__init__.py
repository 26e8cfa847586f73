"""Helpers the tests share: tiny models, synthetic runs, checks (imported as ``helpers.NAME``)."""
