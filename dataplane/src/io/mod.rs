//! Packet I/O: the PacketIo trait and its backends.
