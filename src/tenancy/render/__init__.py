"""Pure renderers: plan reports, inventories, cloud-init, libvirt XML. No Pulumi here."""
