"""The end-to-end tier: the functions and scripts as they run for real, together:
real functions-framework servers on stores in fake-gcs-server buckets (tests.gcs_fixtures,
one server for the session), the daily loop from a loopback portal (tests.fake_portal)
to promoted models, bundles installed and served as Cloud Functions serves them, the
demo, the bench, and the deploy scripts against stand-ins. The HTTP contract itself is
tests/service; what is checked here is what only the whole chain shows.

Servers here are their own (they read buckets that tests change); what only reads the
session's trained store uses `served_pair` / `server_pool` (tests/conftest.py).
"""
