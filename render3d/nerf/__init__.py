"""NeRF: hash-grid (Instant-NGP style) and vanilla fields, samplers, volume rendering, mesh extraction."""

from render3d.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "NerfConfig": ".method",
    "NerfMethod": ".method",
    "VanillaNerfConfig": ".method",
    "VanillaNerfMethod": ".method",
    "HashEncoding": ".encoding",
})
