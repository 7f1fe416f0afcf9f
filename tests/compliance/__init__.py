"""The Tenancy compliance suite: the auditors' checks, one ``test_<domain>.py`` per domain."""
