"""Package data of tenancy (tenancy._resources.policies): the folder ships in the wheel."""
