"""The simulated fleet: a vCenter simulator (govmomi) and a DSM REST stand-in, driven by scenario YAML."""
