# Thin on purpose: registers the pytest glue in fixtures/ and nothing else.
pytest_plugins = ["fixtures.session", "fixtures.report"]
