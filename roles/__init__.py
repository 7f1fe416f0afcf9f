"""Package data of tenancy (tenancy._resources.roles): the folder ships in the wheel."""
