"""Tenancy: department hosting as code on shared libvirt/KVM hypervisors."""

__version__ = "0.1.0"
