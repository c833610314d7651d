"""NeRF: hash-grid (Instant-NGP style) and vanilla fields, samplers, volume rendering, mesh extraction."""
