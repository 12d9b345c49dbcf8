"""Test support shipped with d3hb: the replication oracle and process helpers.

Used by the test suite and by ``d3hb demo``; nothing here runs in production.
"""
