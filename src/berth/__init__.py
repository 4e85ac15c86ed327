"""berth: virtual machines, containers and a cluster from one Python tool."""

__version__ = "0.1.0"
