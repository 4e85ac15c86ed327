"""berth's own OCI runtime (runc-compatible), written in Python over libc through ctypes."""
