"""The local stack: moto server, the SolusVM emulator and a gateway that calls the real handlers."""
