"""Pure planning: IPAM ledger, capacity and quota, placement, firewall flows."""
