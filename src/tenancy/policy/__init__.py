"""Security policy: the control catalogue and waivers (catalogue.py)."""
