"""OCI images: the content store, layers, snapshots, archives and the registry client."""
