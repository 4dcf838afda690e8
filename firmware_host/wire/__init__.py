"""The wire protocol on the host side: the message table (spec) and the pure codec."""
