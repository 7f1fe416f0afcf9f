"""Pulumi program of every site (stack): load tenants + site, plan, build components."""

from tenancy.infra.program import main

main()
