"""d3hb: hot backup and tape-socket for a D3-style MultiValue database."""

__version__ = "0.1.0"
