"""The embedded default scene: a procedural still life and its ground-truth ray tracer.

``render3d train`` with no data trains on this scene. The scene is described by the bundled
``assets/default_scene.json`` (spheres, oriented boxes and capped cylinders with procedural
textures, Lambert + Blinn-Phong shading under directional lights with shadow rays) and is
rendered here, analytically and fully vectorised in torch, into the Blender / NeRF-synthetic
layout::

    out_dir/
      scene.json                      description + generator version + bounds + parameters
      transforms_{train,val,test}.json
      {train,val,test}/r_000.png      RGBA, straight alpha, transparent background
      {train,val,test}/r_000_depth.npy  float32 z-depth along the camera axis, 0 = background
      {train,val,test}/r_000_mask.png   uint8 0/255, the pixel-centre ray hits an object

World units, z up. Cameras look at the centre of the scene bounds from an upper hemisphere.
The output is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from render3d.cameras import Cameras, intrinsics_matrix, look_at, opencv_to_opengl
from render3d.errors import Render3DError
from render3d.runtime import torch_threads

GENERATOR = "render3d.datasets.synthetic"
GENERATOR_VERSION = 2
ASSET_NAME = "default_scene.json"

CAMERA_RADIUS = 4.0
FOV_X_DEG = 42.0
ELEVATION_RANGE_DEG = (10.0, 70.0)
# Subpixel sample offsets (in pixels, relative to the pixel centre). The first one is the
# centre: its ray defines the depth and mask maps, so unprojecting a depth lands on a surface.
SUBPIXEL_OFFSETS = ((0.0, 0.0), (-0.375, -0.125), (0.125, -0.375), (0.375, 0.125), (-0.125, 0.375))

_EPS = 1e-4
_SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- description


def load_description() -> dict[str, Any]:
    """The bundled scene description (``assets/default_scene.json``) as a dict."""
    return json.loads(_description_text())


def _description_text() -> str:
    try:
        from importlib.resources import files

        return files("render3d.assets").joinpath(ASSET_NAME).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return (Path(__file__).resolve().parents[1] / "assets" / ASSET_NAME).read_text(encoding="utf-8")


def _description_sha256(description: dict[str, Any]) -> str:
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def rotation_matrix(degrees: list[float]) -> Tensor:
    """World-from-local rotation ``[3, 3]`` for Euler angles ``(rx, ry, rz)`` in degrees, ``Rz @ Ry @ Rx``."""
    rx, ry, rz = (math.radians(float(a)) for a in degrees)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    Rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]], dtype=torch.float64)
    Ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=torch.float64)
    Rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return (Rz @ Ry @ Rx).float()


@dataclass
class _Object:
    """One primitive in world space, parsed from the description."""

    name: str
    shape: str  # "sphere" | "box" | "cylinder"
    center: Tensor  # [3]
    R: Tensor  # [3, 3] world-from-local
    size: Tensor  # sphere: (r, r, r); box: half extents; cylinder: (r, r, half height)
    material: dict[str, Any]
    axis_aligned: bool = False  # no rotation: the local frame is the world frame translated

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> "_Object":
        shape = spec["shape"]
        if shape == "sphere":
            size = [spec["radius"]] * 3
        elif shape == "box":
            size = spec["half_extents"]
        elif shape == "cylinder":
            size = [spec["radius"], spec["radius"], spec["half_height"]]
        else:
            raise ValueError(f"unknown shape {shape!r} in the scene description")
        R = rotation_matrix(spec.get("rotation_deg", [0.0, 0.0, 0.0]))
        return cls(
            name=spec.get("name", shape),
            shape=shape,
            center=torch.tensor(spec["center"], dtype=torch.float32),
            R=R,
            size=torch.tensor(size, dtype=torch.float32),
            material=spec["material"],
            axis_aligned=bool(torch.equal(R, torch.eye(3))),
        )

    def bounds(self) -> Tensor:
        """Axis-aligned bounds ``[2, 3]`` of the object."""
        if self.shape == "sphere":
            half = self.size
        elif self.shape == "box":
            half = self.R.abs() @ self.size
        else:  # cylinder: disc extent along each world axis plus the axis extent
            axis = self.R[:, 2]
            half = self.size[0] * torch.sqrt((1.0 - axis * axis).clamp_min(0.0)) + self.size[2] * axis.abs()
        return torch.stack([self.center - half, self.center + half])


def _parse_objects(description: dict[str, Any]) -> list[_Object]:
    return [_Object.parse(spec) for spec in description["objects"]]


def scene_bounds(description: Optional[dict[str, Any]] = None) -> Tensor:
    """Axis-aligned box ``[2, 3]`` (min, max) holding every object of the (default) scene."""
    objects = _parse_objects(description or load_description())
    boxes = torch.stack([obj.bounds() for obj in objects])
    return torch.stack([boxes[:, 0].min(0).values, boxes[:, 1].max(0).values])


# --------------------------------------------------------------------------- geometry


def _rotate(R: Tensor, v: Tensor) -> Tensor:
    """``v @ R.T`` written elementwise (bitwise reproducible across thread counts)."""
    return v[:, 0:1] * R[:, 0] + v[:, 1:2] * R[:, 1] + v[:, 2:3] * R[:, 2]


def _to_local(obj: _Object, points: Tensor, dirs: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
    if obj.axis_aligned:
        return points - obj.center, dirs
    Rt = obj.R.T.contiguous()
    local_p = _rotate(Rt, points - obj.center)
    local_d = None if dirs is None else _rotate(Rt, dirs)
    return local_p, local_d


def _first_positive(t0: Tensor, t1: Tensor, valid: Tensor) -> Tensor:
    """The nearer of two ordered roots ``t0 <= t1`` that is in front of the origin, else inf."""
    t = torch.where(t0 > _EPS, t0, t1)
    return torch.where(valid & (t > _EPS), t, torch.full_like(t, math.inf))


def _intersect_sphere(obj: _Object, o: Tensor, d: Tensor) -> Tensor:
    oc = o - obj.center
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - obj.size[0] ** 2
    disc = b * b - c
    root = disc.clamp_min(0.0).sqrt()
    return _first_positive(-b - root, -b + root, disc >= 0)


def _intersect_box(obj: _Object, o: Tensor, d: Tensor) -> Tensor:
    lo, ld = _to_local(obj, o, d)
    inv = 1.0 / torch.where(ld.abs() < 1e-12, torch.full_like(ld, 1e-12), ld)
    ta = (-obj.size - lo) * inv
    tb = (obj.size - lo) * inv
    tmin = torch.minimum(ta, tb).max(-1).values
    tmax = torch.maximum(ta, tb).min(-1).values
    return _first_positive(tmin, tmax, tmax >= tmin)


def _intersect_cylinder(obj: _Object, o: Tensor, d: Tensor) -> Tensor:
    lo, ld = _to_local(obj, o, d)
    r, h = obj.size[0], obj.size[2]
    inf = torch.full_like(lo[:, 0], math.inf)
    # side: x^2 + y^2 = r^2 with |z| <= h
    a = ld[:, 0] ** 2 + ld[:, 1] ** 2
    b = lo[:, 0] * ld[:, 0] + lo[:, 1] * ld[:, 1]
    c = lo[:, 0] ** 2 + lo[:, 1] ** 2 - r * r
    disc = b * b - a * c
    root = disc.clamp_min(0.0).sqrt()
    a_safe = a.clamp_min(1e-12)
    best = inf
    for t in ((-b - root) / a_safe, (-b + root) / a_safe):
        ok = (disc >= 0) & (a > 1e-12) & (t > _EPS) & ((lo[:, 2] + t * ld[:, 2]).abs() <= h)
        best = torch.where(ok & (t < best), t, best)
    # caps: z = +-h with x^2 + y^2 <= r^2
    dz = torch.where(ld[:, 2].abs() < 1e-12, torch.full_like(a, 1e-12), ld[:, 2])
    for z in (-h, h):
        t = (z - lo[:, 2]) / dz
        x = lo[:, 0] + t * ld[:, 0]
        y = lo[:, 1] + t * ld[:, 1]
        ok = (t > _EPS) & (x * x + y * y <= r * r)
        best = torch.where(ok & (t < best), t, best)
    return best


_INTERSECT = {"sphere": _intersect_sphere, "box": _intersect_box, "cylinder": _intersect_cylinder}


@dataclass
class _Light:
    """A directional light: unit ``direction`` towards the light, ``color`` times intensity."""

    direction: Tensor
    color: Tensor
    shadows: bool


@dataclass
class _Scene:
    """A parsed description, ready to trace."""

    objects: list[_Object]
    lights: list[_Light]
    ambient: float
    bounds: Tensor  # [2, 3]

    @classmethod
    def parse(cls, description: dict[str, Any]) -> "_Scene":
        lights = []
        for spec in description["lights"]:
            direction = torch.tensor(spec["direction"], dtype=torch.float32)
            color = torch.tensor(spec["color"], dtype=torch.float32) * float(spec.get("intensity", 1.0))
            lights.append(_Light(direction / direction.norm(), color, bool(spec.get("shadows", True))))
        return cls(_parse_objects(description), lights, float(description.get("ambient", 0.0)), scene_bounds(description))


def _hits_aabb(bounds: Tensor, o: Tensor, d: Tensor) -> Tensor:
    """True for rays that enter the (slightly padded) box ``bounds [2, 3]`` in front of the origin."""
    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    ta = (bounds[0] - 1e-3 - o) * inv
    tb = (bounds[1] + 1e-3 - o) * inv
    tmin = torch.minimum(ta, tb).max(-1).values
    tmax = torch.maximum(ta, tb).min(-1).values
    return (tmax >= tmin) & (tmax > 0)


def _trace(scene: _Scene, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest hit distance ``[R]`` (inf on a miss) and object index ``[R]`` (-1 on a miss) of unit rays."""
    t = torch.full((o.shape[0],), math.inf)
    index = torch.full((o.shape[0],), -1, dtype=torch.long)
    active = _hits_aabb(scene.bounds, o, d)
    if not bool(active.any()):
        return t, index
    oa, da = o[active], d[active]
    ts = torch.stack([_INTERSECT[obj.shape](obj, oa, da) for obj in scene.objects])
    t_near, i_near = ts.min(0)
    t[active] = t_near
    index[active] = torch.where(torch.isfinite(t_near), i_near, torch.full_like(i_near, -1))
    return t, index


def _occluded(scene: _Scene, o: Tensor, d: Tensor) -> Tensor:
    """True where a ray hits anything (shadow rays)."""
    hit = torch.zeros(o.shape[0], dtype=torch.bool)
    for obj in scene.objects:
        hit |= torch.isfinite(_INTERSECT[obj.shape](obj, o, d))
    return hit


def _sdf_local(obj: _Object, p: Tensor) -> Tensor:
    if obj.shape == "sphere":
        return p.norm(dim=-1) - obj.size[0]
    if obj.shape == "box":
        q = p.abs() - obj.size
        return q.clamp_min(0.0).norm(dim=-1) + q.max(-1).values.clamp_max(0.0)
    radial = p[:, :2].norm(dim=-1) - obj.size[0]
    q = torch.stack([radial, p[:, 2].abs() - obj.size[2]], dim=-1)
    return q.clamp_min(0.0).norm(dim=-1) + q.max(-1).values.clamp_max(0.0)


def scene_sdf(points: Tensor, description: Optional[dict[str, Any]] = None) -> Tensor:
    """Signed distance ``[P]`` from world ``points [P, 3]`` to the union of the scene's objects.

    Negative inside, zero on a surface (exact for spheres, boxes and cylinders). Useful to
    check depth maps or to score extracted meshes.
    """
    objects = _parse_objects(description or load_description())
    points = points.reshape(-1, 3).float()
    dists = [_sdf_local(obj, _to_local(obj, points)[0]) for obj in objects]
    return torch.stack(dists).min(0).values


# --------------------------------------------------------------------------- shading


def _local_normal(obj: _Object, p: Tensor) -> Tensor:
    """Outward unit normal at local surface points ``p``."""
    if obj.shape == "sphere":
        return p / p.norm(dim=-1, keepdim=True)
    if obj.shape == "box":
        axis = (p.abs() / obj.size).argmax(-1)
        n = torch.nn.functional.one_hot(axis, 3).float()
        return n * torch.sign(p)
    r, h = obj.size[0], obj.size[2]
    radial = p[:, :2].norm(dim=-1).clamp_min(1e-9)
    on_cap = (p[:, 2].abs() - h).abs() < (radial - r).abs()
    side = torch.stack([p[:, 0] / radial, p[:, 1] / radial, torch.zeros_like(radial)], dim=-1)
    cap = torch.stack([torch.zeros_like(radial), torch.zeros_like(radial), torch.sign(p[:, 2])], dim=-1)
    return torch.where(on_cap[:, None], cap, side)


def _surface_uv(obj: _Object, p: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Texture coordinates ``u, v`` and an integer face id for local points ``p`` with normals ``n``.

    sphere: u = longitude / 2pi, v = colatitude / pi (face 0).
    box: per-face coordinates in [0, 1]^2 (face = 2 * axis + (normal > 0)).
    cylinder: side u = angle / 2pi, v = height in [0, 1] (face 0); caps u, v in [0, 1]^2 (faces 1, 2).
    """
    zero = torch.zeros(p.shape[0], dtype=torch.long)
    if obj.shape == "sphere":
        pn = p / obj.size[0]
        u = torch.atan2(pn[:, 1], pn[:, 0]) / (2 * math.pi) + 0.5
        v = torch.acos(pn[:, 2].clamp(-1.0, 1.0)) / math.pi
        return u, v, zero
    if obj.shape == "box":
        axis = n.abs().argmax(-1)
        face = 2 * axis + (n.gather(1, axis[:, None])[:, 0] > 0).long()
        coords = (p / obj.size + 1.0) * 0.5  # [0, 1]^3
        u_axis = torch.tensor([1, 0, 0])[axis]
        v_axis = torch.tensor([2, 2, 1])[axis]
        u = coords.gather(1, u_axis[:, None])[:, 0]
        v = coords.gather(1, v_axis[:, None])[:, 0]
        return u, v, face
    r, h = obj.size[0], obj.size[2]
    on_cap = n[:, 2].abs() > 0.5
    u_side = torch.atan2(p[:, 1], p[:, 0]) / (2 * math.pi) + 0.5
    v_side = (p[:, 2] / h + 1.0) * 0.5
    u = torch.where(on_cap, (p[:, 0] / r + 1.0) * 0.5, u_side)
    v = torch.where(on_cap, (p[:, 1] / r + 1.0) * 0.5, v_side)
    face = torch.where(on_cap, torch.where(n[:, 2] > 0, 2, 1), zero)
    return u, v, face


def _palette(colors: list[list[float]]) -> Tensor:
    return torch.tensor(colors, dtype=torch.float32).reshape(-1, 3)


def _smooth_mix(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    return a + (b - a) * w[:, None]


def _albedo(obj: _Object, p: Tensor, n: Tensor) -> Tensor:
    """Procedural base colour ``[R, 3]`` at local points ``p`` with local normals ``n``."""
    tex = obj.material["texture"]
    colors = _palette(tex["colors"])
    kind = tex["type"]
    if kind == "solid":
        return colors[0].expand(p.shape[0], 3).clone()
    if kind == "checker":  # world-unit squares on the box faces (local coordinates)
        axis = n.abs().argmax(-1)
        size = float(tex["size"])
        cells = torch.floor((p + obj.size) / size).long()
        u_axis = torch.tensor([1, 0, 0])[axis]
        v_axis = torch.tensor([2, 2, 1])[axis]
        parity = (cells.gather(1, u_axis[:, None]) + cells.gather(1, v_axis[:, None]))[:, 0] % 2
        return colors[parity]
    u, v, face = _surface_uv(obj, p, n)
    if kind == "segments":  # beach ball: coloured longitude segments and light caps
        seg = torch.floor(u * int(tex["count"])).long().clamp(0, int(tex["count"]) - 1) % len(colors)
        out = colors[seg]
        cap = float(tex.get("cap", 0.0))
        is_cap = (v < cap) | (v > 1.0 - cap)
        return torch.where(is_cap[:, None], _palette([tex["cap_color"]])[0], out)
    if kind == "stripes":  # smooth bands along u or v
        coord = u if tex.get("axis", "v") == "u" else v
        wave = 0.5 - 0.5 * torch.cos(2 * math.pi * int(tex["count"]) * coord)
        w = (wave - 0.5) * 2.5 + 0.5
        return _smooth_mix(colors[0].expand(p.shape[0], 3), colors[1].expand(p.shape[0], 3), w.clamp(0.0, 1.0))
    if kind == "faces":  # one colour per face with a light frame
        out = colors[face % len(colors)]
        border = float(tex.get("border", 0.0))
        edge = torch.minimum(torch.minimum(u, 1.0 - u), torch.minimum(v, 1.0 - v))
        frame = edge < border
        return torch.where(frame[:, None], _palette([tex["border_color"]])[0], out)
    raise ValueError(f"unknown texture type {kind!r} on object {obj.name!r}")


def _surface(scene: _Scene, points: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """World normals, albedo, specular weight and shininess at hit ``points`` of objects ``index``."""
    normals = torch.zeros_like(points)
    albedo = torch.zeros_like(points)
    specular = torch.zeros(points.shape[0])
    shininess = torch.ones(points.shape[0])
    for k, obj in enumerate(scene.objects):
        sel = index == k
        if not bool(sel.any()):
            continue
        local_p, _ = _to_local(obj, points[sel])
        local_n = _local_normal(obj, local_p)
        normals[sel] = local_n if obj.axis_aligned else _rotate(obj.R, local_n)
        albedo[sel] = _albedo(obj, local_p, local_n)
        specular[sel] = float(obj.material.get("specular", 0.0))
        shininess[sel] = float(obj.material.get("shininess", 1.0))
    return normals, albedo, specular, shininess


def _shade(scene: _Scene, o: Tensor, d: Tensor, t: Tensor, index: Tensor) -> Tensor:
    """Lambert + Blinn-Phong RGB ``[R, 3]`` in [0, 1] for rays that hit (``t`` finite), with shadow rays."""
    points = o + t[:, None] * d
    normals, albedo, specular, shininess = _surface(scene, points, index)
    rgb = albedo * scene.ambient
    for light in scene.lights:
        lambert = (normals * light.direction).sum(-1).clamp_min(0.0)
        lit = lambert > 0
        if light.shadows and bool(lit.any()):
            origins = points[lit] + normals[lit] * 1e-3
            shadowed = _occluded(scene, origins, light.direction.expand_as(origins))
            lit[lit.clone()] = ~shadowed
        half = light.direction - d
        half = half / half.norm(dim=-1, keepdim=True)
        spec = specular * (normals * half).sum(-1).clamp_min(0.0) ** shininess
        rgb = rgb + lit.float()[:, None] * (albedo * lambert[:, None] + spec[:, None]) * light.color
    return rgb.clamp(0.0, 1.0)


# --------------------------------------------------------------------------- cameras


def _focal(width: int) -> float:
    return 0.5 * width / math.tan(0.5 * math.radians(FOV_X_DEG))


def _hemisphere_eyes(n: int, azimuth_offset: float, stagger: float) -> Tensor:
    """``n`` unit directions on a Fibonacci spiral over the elevation band; ``stagger`` in [0, 1) shifts the rings."""
    lo, hi = (math.sin(math.radians(e)) for e in ELEVATION_RANGE_DEG)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    eyes = []
    for i in range(n):
        z = lo + (hi - lo) * (i + 0.5 * (1.0 + stagger)) / (n + stagger)
        azimuth = azimuth_offset + i * golden
        ring = math.sqrt(max(0.0, 1.0 - z * z))
        eyes.append([ring * math.cos(azimuth), ring * math.sin(azimuth), z])
    return torch.tensor(eyes, dtype=torch.float64).reshape(-1, 3)


def make_cameras(n: int, resolution: int, split: str = "train", seed: int = 0, description: Optional[dict[str, Any]] = None) -> Cameras:
    """The ``n`` cameras of one split (OpenCV convention), on an upper hemisphere looking at the scene centre, z up.

    Train, val and test use differently offset spirals (the azimuth offset comes from
    ``seed`` and the split), so their views never coincide.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    rng = np.random.default_rng([seed, _SPLITS.index(split)])
    azimuth_offset = float(rng.uniform(0.0, 2.0 * math.pi))
    stagger = {"train": 0.0, "val": 0.5, "test": 0.25}[split]
    eyes = _hemisphere_eyes(n, azimuth_offset, stagger) * CAMERA_RADIUS
    bounds = scene_bounds(description).double()
    target = 0.5 * (bounds[0] + bounds[1])
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    c2w = torch.stack([look_at(eye + target, target, up) for eye in eyes]) if n else torch.zeros(0, 4, 4)
    f = _focal(resolution)
    K = intrinsics_matrix(f, f, 0.5 * resolution, 0.5 * resolution).expand(n, 3, 3).clone()
    return Cameras(K, c2w.float(), resolution, resolution)


# --------------------------------------------------------------------------- rendering


def _camera_rays(cameras: Cameras, index: int, offset: tuple[float, float]) -> tuple[Tensor, Tensor, Tensor]:
    """World origins, unit directions and z-depth per unit distance ``[H*W]`` for one subpixel offset."""
    K = cameras.K[index]
    ys, xs = torch.meshgrid(
        torch.arange(cameras.height, dtype=torch.float32) + 0.5 + offset[1],
        torch.arange(cameras.width, dtype=torch.float32) + 0.5 + offset[0],
        indexing="ij",
    )
    cam = torch.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], torch.ones_like(xs)], -1).reshape(-1, 3)
    norm = cam.norm(dim=-1, keepdim=True)
    dirs = _rotate(cameras.c2w[index, :3, :3], cam / norm)
    origins = cameras.c2w[index, :3, 3].expand_as(dirs)
    return origins, dirs, 1.0 / norm[:, 0]


def _trace_and_shade(scene: _Scene, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """RGB ``[R, 3]`` (0 on a miss), hit distance ``[R]`` and object index ``[R]`` (-1 on a miss)."""
    t, index = _trace(scene, o, d)
    hit = index >= 0
    rgb = torch.zeros(o.shape[0], 3)
    if bool(hit.any()):
        rgb[hit] = _shade(scene, o[hit], d[hit], t[hit], index[hit])
    return rgb, t, index


def render_view(
    cameras: Cameras, index: int, description: Optional[dict[str, Any] | _Scene] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-trace camera ``index`` of ``cameras`` (OpenCV convention), ``SUBPIXEL_OFFSETS`` samples per pixel.

    Returns:
        rgba ``[H, W, 4]`` uint8 (straight alpha: colour is the mean over covered subpixels),
        depth ``[H, W]`` float32 z-depth of the pixel-centre ray (0 where it misses),
        mask ``[H, W]`` uint8, 255 where the pixel-centre ray hits.
    """
    scene = description if isinstance(description, _Scene) else _Scene.parse(description or load_description())
    H, W = cameras.height, cameras.width
    color_sum = torch.zeros(H * W, 3)
    hits = torch.zeros(H * W)
    depth = torch.zeros(H * W)
    for s, offset in enumerate(SUBPIXEL_OFFSETS):
        o, d, z_factor = _camera_rays(cameras, index, offset)
        rgb, t, obj = _trace_and_shade(scene, o, d)
        hit = obj >= 0
        color_sum += rgb
        hits += hit.float()
        if s == 0:  # the centre sample defines depth and mask
            depth = torch.where(hit, t * z_factor, torch.zeros_like(t))
    alpha = hits / len(SUBPIXEL_OFFSETS)
    color = color_sum / hits.clamp_min(1.0)[:, None]
    rgba = torch.cat([color, alpha[:, None]], dim=-1).reshape(H, W, 4)
    rgba8 = (rgba * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    depth_np = depth.reshape(H, W).numpy().astype(np.float32)
    mask = (depth_np > 0).astype(np.uint8) * 255
    return rgba8, depth_np, mask


# --------------------------------------------------------------------------- writing


def _params(resolution: int, n_train: int, n_val: int, n_test: int, seed: int, description: dict[str, Any]) -> dict[str, Any]:
    return {
        "resolution": int(resolution),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "seed": int(seed),
        "description_sha256": _description_sha256(description),
    }


def _write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _write_split(root: Path, split: str, cameras: Cameras, scene: _Scene, scene_meta: dict[str, Any]) -> None:
    """Render one split and write its images and transforms json (stating bounds and near/far)."""
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    c2w_gl = opencv_to_opengl(cameras.c2w)
    for i in range(len(cameras)):
        stem = f"r_{i:03d}"
        rgba, depth, mask = render_view(cameras, i, scene)
        _write_png(root / split / f"{stem}.png", rgba)
        _write_png(root / split / f"{stem}_mask.png", mask)
        np.save(root / split / f"{stem}_depth.npy", depth)
        frames.append(
            {
                "file_path": f"./{split}/{stem}",
                "depth_file_path": f"./{split}/{stem}_depth.npy",
                "mask_file_path": f"./{split}/{stem}_mask.png",
                "transform_matrix": [[round(float(x), 8) for x in row] for row in c2w_gl[i].tolist()],
            }
        )
    fx = _focal(cameras.width)
    meta = {
        "camera_angle_x": 2.0 * math.atan(0.5 * cameras.width / fx),
        "aabb": scene_meta["bounds"],
        "near": scene_meta["near_far"][0],
        "far": scene_meta["near_far"][1],
        "frames": frames,
    }
    (root / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _scene_meta(params: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    bounds = scene_bounds(description)
    center = 0.5 * (bounds[0] + bounds[1])
    radius = float(0.5 * (bounds[1] - bounds[0]).norm())
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "bounds": [[round(float(x), 6) for x in row] for row in bounds.tolist()],
        "near_far": [round(max(0.05, CAMERA_RADIUS - radius), 6), round(CAMERA_RADIUS + radius, 6)],
        "camera": {
            "radius": CAMERA_RADIUS,
            "target": [round(float(x), 6) for x in center.tolist()],
            "fov_x_deg": FOV_X_DEG,
            "elevation_range_deg": list(ELEVATION_RANGE_DEG),
            "world_up": [0.0, 0.0, 1.0],
        },
        "background": "transparent",
        "description": description,
        "complete": True,
    }


def is_complete_scene(folder: Path, params: Optional[dict[str, Any]] = None) -> bool:
    """True if ``folder`` holds a complete generated scene (with these ``params`` when given)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "scene.json").read_text(encoding="utf-8"))
        if meta.get("generator") != GENERATOR or meta.get("generator_version") != GENERATOR_VERSION:
            return False
        if not meta.get("complete") or (params is not None and meta.get("params") != params):
            return False
        for split in _SPLITS:
            frames = json.loads((folder / f"transforms_{split}.json").read_text(encoding="utf-8"))["frames"]
            if len(frames) != meta["params"][f"n_{split}"]:
                return False
            for frame in frames:
                for key, suffix in (("file_path", ".png"), ("depth_file_path", ""), ("mask_file_path", "")):
                    if not (folder / (frame[key] + suffix)).is_file():
                        return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _clear_stale(out_dir: Path) -> None:
    """Remove an incomplete or outdated generated scene; refuse to touch unrelated folders."""
    if not out_dir.exists():
        return
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
        return
    if out_dir.is_dir() and (out_dir / "scene.json").is_file():
        try:
            generator = json.loads((out_dir / "scene.json").read_text(encoding="utf-8")).get("generator")
        except (OSError, ValueError):
            generator = None
        if generator == GENERATOR:
            shutil.rmtree(out_dir)
            return
    raise Render3DError(f"{out_dir} exists and is not a render3d synthetic scene; choose an empty or new folder")


def generate_scene(
    out_dir: str | os.PathLike[str],
    resolution: int = 128,
    n_train: int = 100,
    n_val: int = 10,
    n_test: int = 20,
    seed: int = 0,
) -> Path:
    """Render the default scene into ``out_dir`` in the Blender / NeRF-synthetic layout.

    Reuses ``out_dir`` untouched if it already holds a complete scene with the same
    parameters. Otherwise renders into a temporary sibling folder and renames it into place,
    so an interrupted run never leaves a half-written scene. Deterministic: the same
    arguments give the same bytes.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    out_dir = Path(out_dir).expanduser()
    description = load_description()
    params = _params(resolution, n_train, n_val, n_test, seed, description)
    if is_complete_scene(out_dir, params):
        return out_dir
    if resolution < 1 or min(n_train, n_val, n_test) < 0:
        raise Render3DError(f"invalid synthetic scene size: resolution {resolution}, views {n_train}/{n_val}/{n_test}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        scene = _Scene.parse(description)
        meta = _scene_meta(params, description)
        with torch.inference_mode(), torch_threads(1):
            for split, n in zip(_SPLITS, (n_train, n_val, n_test)):
                _write_split(tmp, split, make_cameras(n, resolution, split, seed, description), scene, meta)
        (tmp / "scene.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, out_dir, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _publish(tmp: Path, out_dir: Path, params: dict[str, Any]) -> None:
    """Move the finished ``tmp`` folder to ``out_dir``; if another process won the race, keep theirs."""
    if is_complete_scene(out_dir, params):
        return
    _clear_stale(out_dir)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if not is_complete_scene(out_dir, params):
            raise


def default_cache_root() -> Path:
    """``$RENDER3D_CACHE``, else ``$XDG_CACHE_HOME/render3d``, else ``~/.cache/render3d``."""
    if os.environ.get("RENDER3D_CACHE"):
        return Path(os.environ["RENDER3D_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "render3d"


def default_scene_dir(resolution: int = 128) -> Path:
    """The cached default scene folder, generated on first use (a few seconds)."""
    folder = default_cache_root() / f"default_scene_v{GENERATOR_VERSION}_{resolution}"
    return generate_scene(folder, resolution=resolution)
