"""Capability: run-failure alerts, recorded on the external asset run_failures and posted to a webhook."""
