"""Tenant and site contracts: models, located YAML loading, cross-document checks."""
