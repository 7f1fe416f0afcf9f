"""Pulumi resources for the hypervisors: the only package that talks to Pulumi and libvirt.

``tenancy.infra.dynamic`` holds the libvirt resources, implemented as Pulumi
dynamic providers in Python on the libvirt binding (one resource kind per
module); ``tenancy.infra.libvirt_conn`` is the connection helper they share.
Components (Segment, StorageVolume, VirtualMachine, FirewallPolicy) build on
them.
"""
