"""Package data of tenancy (tenancy._resources.templates): the folder ships in the wheel."""
