"""Multi-image datasets (link-context episodes, in-context instructions): added by later issues."""
