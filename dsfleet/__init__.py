"""dsfleet: compliance and acceptance checks for agentless Deep Security fleets on VMware.

The library is split by job: :mod:`inventory` (what to check), the gatherers :mod:`dsm` and
:mod:`vcenter` (one client per external system), :mod:`gather` (runs them into a :mod:`snapshot`),
:mod:`fleet` (joined views the checks read), :mod:`buildpolicy` and :mod:`catalog` (cited data).
Only :mod:`dsfleet.pytest_plugin` imports pytest.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
