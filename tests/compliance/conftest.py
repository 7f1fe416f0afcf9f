pytest_plugins = ["tenancy.policy.suite_policy", "tenancy.compliance.plugin"]
