"""The fleet compliance checks: one module per concern, one function per check (shipped as dsfleet.checks)."""
