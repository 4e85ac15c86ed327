"""The OCI data model: runtime config, state, image types. Parsing and validation, no I/O."""
