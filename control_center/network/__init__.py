"""The ground network: sites, their bridges and ACLs (docs/network.md)."""
