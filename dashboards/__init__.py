"""Dashboards, alert rules and deployment manifests as code, generated from one set of parameters."""
