"""The container engine: containers made from images, run by berth's runtime, without a daemon."""
