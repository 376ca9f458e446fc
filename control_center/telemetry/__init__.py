"""The telemetry model, pure and free of I/O: CCSDS packets, the telemetry database
(TMDB) and its loaders, the codec that decodes packets with numpy, and the records
that travel between stages."""
