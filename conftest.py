# Thin on purpose: registers the pytest glue (fixtures/, shipped as dsfleet.fixtures) and nothing else. The dsfleet
# plugin's entry point registers the same modules under the same names, so an installed wheel runs anywhere.
pytest_plugins = ["dsfleet.fixtures.session", "dsfleet.fixtures.report", "dsfleet.fixtures.rows",
                  "dsfleet.fixtures.junit"]
