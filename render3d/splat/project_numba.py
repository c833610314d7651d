"""Gaussian projection and SH colours compiled for the CPU with numba (forward and backward).

Drop-ins for :func:`render3d.splat.project.project_gaussians` (with
:func:`~render3d.splat.project.covariance_3d` folded in: quaternions and linear scales go
in) and :func:`render3d.splat.render.sh_colors`, which stay the reference these kernels are
tested against (see :mod:`render3d.cpu_kernels` for when they run). In torch these are
dozens of small ops over ``[C, N, 3, 3]`` tensors, each with its autograd node; here each
Gaussian is one loop iteration (``prange`` over Gaussians, cameras inside it), forward and
backward, in float64 arithmetic with float32 inputs and outputs.

The backward passes are the chain rule of the torch code written out:

- projection: ``conic = inv(J W R S S^T R^T W^T J^T + eps2d I)``, ``means2d = f t_xy / t_z + c``,
  ``depth = t_z`` (``t = W mean + w``), back to the mean, the normalised quaternion and the
  scales; the Jacobian's clamped x/y (1.3x the field of view) pass no gradient to ``t_x``/``t_y``
  but their clamp value to ``t_z``, as in torch. Radii are integers (no gradient).
- antialiased compensation ``sqrt(det(Σ2d - eps2d I) / det(Σ2d))``: back to ``Σ2d``'s entries (none where
  the ratio is clamped at 0).
- colours: ``max(SH(d) . coeffs + 0.5, 0)`` with ``d`` the unit direction from the camera to
  the Gaussian, back to the coefficients and (through ``d``) to the mean.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from render3d.cpu_kernels import launch, njit
from render3d.splat.project import Projection
from render3d.splat.sh import C0, C1, C2, C3

_RADIUS_SIGMAS = 3.33
_CHUNK = 256  # Gaussians per parallel work item (each reuses its scratch matrices)


@njit(inline=True)
def _rotation(qw, qx, qy, qz, rot):
    """Rotation matrix ``rot [3, 3]`` of a unit quaternion."""
    rot[0, 0], rot[0, 1], rot[0, 2] = 1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)
    rot[1, 0], rot[1, 1], rot[1, 2] = 2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)
    rot[2, 0], rot[2, 1], rot[2, 2] = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)


@njit(inline=True)
def _gaussian_in_camera(mean, quat, scale, view, rot, m, cov, cov_cam, t):
    """Camera-space centre ``t [3]`` and covariance ``cov_cam [3, 3]`` (world covariance in ``cov``,
    its factor ``m = R S`` and the rotation ``rot`` kept for the backward). Returns the quaternion's norm."""
    norm = max(math.sqrt(quat[0] ** 2 + quat[1] ** 2 + quat[2] ** 2 + quat[3] ** 2), 1e-12)
    _rotation(quat[0] / norm, quat[1] / norm, quat[2] / norm, quat[3] / norm, rot)
    for i in range(3):
        for j in range(3):
            m[i, j] = rot[i, j] * scale[j]
    for i in range(3):
        for j in range(3):
            cov[i, j] = m[i, 0] * m[j, 0] + m[i, 1] * m[j, 1] + m[i, 2] * m[j, 2]
    for i in range(3):
        t[i] = view[i, 0] * mean[0] + view[i, 1] * mean[1] + view[i, 2] * mean[2] + view[i, 3]
    for i in range(3):
        for j in range(3):
            acc = 0.0
            for k in range(3):
                for n in range(3):
                    acc += view[i, k] * cov[k, n] * view[j, n]
            cov_cam[i, j] = acc
    return norm


@njit(inline=True)
def _limits(k, width, height):
    """The Jacobian's clamp on ``t_x / t_z`` and ``t_y / t_z``: 1.3x the field of view (gsplat's rule)."""
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    return ((width - cx) / fx + 0.15 * width / fx, cx / fx + 0.15 * width / fx,
            (height - cy) / fy + 0.15 * height / fy, cy / fy + 0.15 * height / fy)


@njit(inline=True)
def _cov2d(cov_cam, j00, j02, j11, j12, eps2d):
    """``J cov_cam J^T + eps2d I`` as ``(a, b, c)`` for ``J = [[j00, 0, j02], [0, j11, j12]]``."""
    a = j00 * (j00 * cov_cam[0, 0] + j02 * cov_cam[0, 2]) + j02 * (j00 * cov_cam[2, 0] + j02 * cov_cam[2, 2]) + eps2d
    b = j00 * (j11 * cov_cam[0, 1] + j12 * cov_cam[0, 2]) + j02 * (j11 * cov_cam[2, 1] + j12 * cov_cam[2, 2])
    c = j11 * (j11 * cov_cam[1, 1] + j12 * cov_cam[1, 2]) + j12 * (j11 * cov_cam[2, 1] + j12 * cov_cam[2, 2]) + eps2d
    return a, b, c


@njit(inline=True)
def _radius(value):
    """``ceil(3.33 sqrt(value))`` in float32, as the torch code computes it (NaN for a negative value)."""
    if not value >= 0:
        return np.float32(np.nan)
    return np.float32(math.ceil(np.float32(_RADIUS_SIGMAS) * np.float32(math.sqrt(np.float32(value)))))


@njit(inline=True)
def _compensation(a, b, cc, eps2d):
    """The antialiased mode's opacity factor ``sqrt(det(Σ2d - eps2d I) / det(Σ2d))`` for ``Σ2d = [[a, b], [b, cc]]``
    (0 where either determinant is not positive) and the ratio under the root."""
    det = a * cc - b * b
    ratio = ((a - eps2d) * (cc - eps2d) - b * b) / det if det > 1e-10 else 0.0
    return (math.sqrt(ratio) if ratio > 0.0 else 0.0), ratio


@njit(inline=True)
def _project_one(g, c, means, quats, scales, views, intrinsics, width, height, eps2d, near, far, antialiased,
                 rot, m, cov, cov_cam, t, out_means2d, out_conics, out_depths, out_radii, out_comps):
    """Project Gaussian ``g`` into camera ``c``."""
    k = intrinsics[c]
    _gaussian_in_camera(means[g], quats[g], scales[g], views[c], rot, m, cov, cov_cam, t)
    lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg = _limits(k, width, height)
    fx, fy, tx, ty, tz = k[0, 0], k[1, 1], t[0], t[1], t[2]
    txc = tz * max(min(tx / tz, lim_x_pos), -lim_x_neg)
    tyc = tz * max(min(ty / tz, lim_y_pos), -lim_y_neg)
    a, b, cc = _cov2d(cov_cam, fx / tz, -fx * txc / (tz * tz), fy / tz, -fy * tyc / (tz * tz), eps2d)
    det = max(a * cc - b * b, 1e-10)
    out_conics[c, g, 0], out_conics[c, g, 1], out_conics[c, g, 2] = cc / det, -b / det, a / det
    u, v = np.float32(fx * tx / tz + k[0, 2]), np.float32(fy * ty / tz + k[1, 2])
    out_means2d[c, g, 0], out_means2d[c, g, 1] = u, v
    out_depths[c, g] = tz
    rx, ry = _radius(a), _radius(cc)
    inside = u + rx > 0 and u - rx < width and v + ry > 0 and v - ry < height
    keep = tz > near and tz < far and inside and math.isfinite(rx) and math.isfinite(ry)
    out_radii[c, g, 0] = np.int32(rx) if keep else 0
    out_radii[c, g, 1] = np.int32(ry) if keep else 0
    out_comps[c, g] = _compensation(a, b, cc, eps2d)[0] if antialiased else 1.0


@njit(parallel=True)
def _project_forward(means, quats, scales, views, intrinsics, width, height, eps2d, near, far, antialiased,
                     out_means2d, out_conics, out_depths, out_radii, out_comps):
    """Fill the ``[C, N, ...]`` outputs of :func:`project_gaussians_numba`."""
    n = means.shape[0]
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):
        rot, m, cov, cov_cam, t = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3)), np.empty(3)
        for g in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            for c in range(views.shape[0]):
                _project_one(g, c, means, quats, scales, views, intrinsics, width, height, eps2d, near, far, antialiased,
                             rot, m, cov, cov_cam, t, out_means2d, out_conics, out_depths, out_radii, out_comps)


@njit(inline=True)
def _project_one_backward(g, c, means, quats, scales, views, intrinsics, width, height, eps2d, antialiased,
                          g_means2d, g_conics, g_depths, g_comps, rot, m, cov, cov_cam, t, g_cam, g_j, g_cov, g_means):
    """Add camera ``c``'s gradient of Gaussian ``g`` to ``g_means[g]`` and to ``g_cov`` (its world covariance).

    Returns the quaternion's norm (``rot`` and ``m = R S`` are left for :func:`_shape_backward`).
    """
    view, k = views[c], intrinsics[c]
    norm = _gaussian_in_camera(means[g], quats[g], scales[g], view, rot, m, cov, cov_cam, t)
    lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg = _limits(k, width, height)
    fx, fy, tx, ty, tz = k[0, 0], k[1, 1], t[0], t[1], t[2]
    rx, ry = tx / tz, ty / tz
    txc, tyc = tz * max(min(rx, lim_x_pos), -lim_x_neg), tz * max(min(ry, lim_y_pos), -lim_y_neg)
    j00, j02, j11, j12 = fx / tz, -fx * txc / (tz * tz), fy / tz, -fy * tyc / (tz * tz)
    a, b, cc = _cov2d(cov_cam, j00, j02, j11, j12, eps2d)
    det_raw = a * cc - b * b
    det = max(det_raw, 1e-10)
    # conic (A, B, C) = (c, -b, a) / det; the clamped det passes no gradient
    gA, gB, gC = g_conics[c, g, 0], g_conics[c, g, 1], g_conics[c, g, 2]
    g_det = -(gA * cc - gB * b + gC * a) / (det * det) if det_raw > 1e-10 else 0.0
    ga, gc = gC / det + g_det * cc, gA / det + g_det * a
    g01 = 0.5 * (-gB / det - 2.0 * g_det * b)  # each of the two off-diagonal entries of cov2d
    if antialiased:
        comp, ratio = _compensation(a, b, cc, eps2d)
        if ratio > 0.0 and det_raw > 1e-10:
            # comp = sqrt(s / d) with s = (a - e)(cc - e) - b^2, d = a cc - b^2
            g_ratio = g_comps[c, g] * 0.5 / comp
            ga += g_ratio * ((cc - eps2d) - ratio * cc) / det_raw
            gc += g_ratio * ((a - eps2d) - ratio * a) / det_raw
            g01 += 0.5 * g_ratio * (-2.0 * b + ratio * 2.0 * b) / det_raw
    # cov2d = J cov_cam J^T: dL/dcov_cam = J^T G J, dL/dJ = 2 G J cov_cam with G = [[ga, g01], [g01, gc]]
    jj = ((j00, 0.0, j02), (0.0, j11, j12))
    gg = ((ga, g01), (g01, gc))
    for i in range(3):
        for n in range(3):
            acc = 0.0
            for p in range(2):
                for q in range(2):
                    acc += jj[p][i] * gg[p][q] * jj[q][n]
            g_cam[i, n] = acc
    for p in range(2):
        for i in range(3):
            acc = 0.0
            for q in range(2):
                for n in range(3):
                    acc += gg[p][q] * jj[q][n] * cov_cam[n, i]
            g_j[p, i] = 2.0 * acc
    # J back to t; a clamped t_x / t_z passes its clamp value to t_z and nothing to t_x (likewise y)
    g_tx, g_ty = 0.0, 0.0
    g_tz = g_depths[c, g] - (g_j[0, 0] * fx + g_j[1, 1] * fy) / (tz * tz)
    g_tz += 2.0 * (g_j[0, 2] * fx * txc + g_j[1, 2] * fy * tyc) / (tz * tz * tz)
    g_txc, g_tyc = -g_j[0, 2] * fx / (tz * tz), -g_j[1, 2] * fy / (tz * tz)
    if -lim_x_neg <= rx <= lim_x_pos:
        g_tx += g_txc
    else:
        g_tz += g_txc * max(min(rx, lim_x_pos), -lim_x_neg)
    if -lim_y_neg <= ry <= lim_y_pos:
        g_ty += g_tyc
    else:
        g_tz += g_tyc * max(min(ry, lim_y_pos), -lim_y_neg)
    # means2d = f t_xy / t_z + c
    gu, gv = g_means2d[c, g, 0], g_means2d[c, g, 1]
    g_tx += gu * fx / tz
    g_ty += gv * fy / tz
    g_tz -= (gu * fx * tx + gv * fy * ty) / (tz * tz)
    for i in range(3):  # t = W mean + w
        g_means[g, i] += view[0, i] * g_tx + view[1, i] * g_ty + view[2, i] * g_tz
    for i in range(3):  # cov_cam = W cov W^T
        for n in range(3):
            acc = 0.0
            for p in range(3):
                for q in range(3):
                    acc += view[p, i] * g_cam[p, q] * view[q, n]
            g_cov[i, n] += acc
    return norm


@njit(inline=True)
def _shape_backward(g, quats, scales, norm, rot, m, g_cov, g_rot, g_quats, g_scales):
    """``cov = M M^T``, ``M = R(q / |q|) S``: the world covariance's gradient back to quaternion and scales."""
    for j in range(3):  # dL/dM = 2 g_cov M (g_cov is symmetric)
        g_s = 0.0
        for i in range(3):
            g_m = 2.0 * (g_cov[i, 0] * m[0, j] + g_cov[i, 1] * m[1, j] + g_cov[i, 2] * m[2, j])
            g_rot[i, j] = g_m * scales[g, j]
            g_s += g_m * rot[i, j]
        g_scales[g, j] = g_s
    qw, qx, qy, qz = quats[g, 0] / norm, quats[g, 1] / norm, quats[g, 2] / norm, quats[g, 3] / norm
    r = g_rot
    gw = 2.0 * (-qz * r[0, 1] + qy * r[0, 2] + qz * r[1, 0] - qx * r[1, 2] - qy * r[2, 0] + qx * r[2, 1])
    gx = 2.0 * (qy * r[0, 1] + qz * r[0, 2] + qy * r[1, 0] - 2.0 * qx * r[1, 1] - qw * r[1, 2]
                + qz * r[2, 0] + qw * r[2, 1] - 2.0 * qx * r[2, 2])
    gy = 2.0 * (-2.0 * qy * r[0, 0] + qx * r[0, 1] + qw * r[0, 2] + qx * r[1, 0] + qz * r[1, 2]
                - qw * r[2, 0] + qz * r[2, 1] - 2.0 * qy * r[2, 2])
    gz = 2.0 * (-2.0 * qz * r[0, 0] - qw * r[0, 1] + qx * r[0, 2] + qw * r[1, 0] - 2.0 * qz * r[1, 1]
                + qy * r[1, 2] + qx * r[2, 0] + qy * r[2, 1])
    dot = qw * gw + qx * gx + qy * gy + qz * gz  # q = p / |p|: dL/dp = (dL/dq - q (q . dL/dq)) / |p|
    g_quats[g, 0], g_quats[g, 1] = (gw - qw * dot) / norm, (gx - qx * dot) / norm
    g_quats[g, 2], g_quats[g, 3] = (gy - qy * dot) / norm, (gz - qz * dot) / norm


@njit(parallel=True)
def _project_backward(means, quats, scales, views, intrinsics, width, height, eps2d, antialiased,
                      g_means2d, g_conics, g_depths, g_comps, g_means, g_quats, g_scales):
    """Gradients of :func:`_project_forward`'s outputs back to ``means``, ``quats`` and ``scales`` (zeros on entry)."""
    n = means.shape[0]
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):
        rot, m, cov, cov_cam, t = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3)), np.empty(3)
        g_cov, g_cam, g_j, g_rot = np.empty((3, 3)), np.empty((3, 3)), np.empty((2, 3)), np.empty((3, 3))
        for g in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            g_cov[:] = 0.0
            norm = 1.0
            for c in range(views.shape[0]):
                norm = _project_one_backward(g, c, means, quats, scales, views, intrinsics, width, height, eps2d, antialiased,
                                             g_means2d, g_conics, g_depths, g_comps, rot, m, cov, cov_cam, t, g_cam, g_j,
                                             g_cov, g_means)
            if views.shape[0] > 0:
                _shape_backward(g, quats, scales, norm, rot, m, g_cov, g_rot, g_quats, g_scales)


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().float().contiguous().numpy()


class _ProjectFunction(torch.autograd.Function):
    """Autograd wrapper of the projection kernels."""

    @staticmethod
    def forward(ctx, means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor,  # type: ignore[override]
                width: int, height: int, eps2d: float, near: float, far: float, antialiased: bool):
        arrays = [_numpy(t) for t in (means, quats, scales, viewmats, Ks)]
        n_cams, n = len(viewmats), len(means)
        means2d, conics = np.empty((n_cams, n, 2), np.float32), np.empty((n_cams, n, 3), np.float32)
        depths, radii = np.empty((n_cams, n), np.float32), np.empty((n_cams, n, 2), np.int32)
        comps = np.empty((n_cams, n), np.float32)
        with launch():
            _project_forward(*arrays, width, height, eps2d, near, far, antialiased, means2d, conics, depths, radii, comps)
        ctx.arrays, ctx.settings = arrays, (width, height, eps2d, antialiased)
        radii_t = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii_t)
        return torch.from_numpy(means2d), torch.from_numpy(conics), torch.from_numpy(depths), radii_t, torch.from_numpy(comps)

    @staticmethod
    def backward(ctx, g_means2d: Tensor, g_conics: Tensor, g_depths: Tensor, _g_radii: Tensor,  # type: ignore[override]
                 g_comps: Tensor):
        means = ctx.arrays[0]
        g_means, g_quats, g_scales = np.zeros_like(means), np.zeros((len(means), 4), np.float32), np.zeros_like(means)
        with launch():
            _project_backward(*ctx.arrays, *ctx.settings, _numpy(g_means2d), _numpy(g_conics), _numpy(g_depths),
                              _numpy(g_comps), g_means, g_quats, g_scales)
        return (torch.from_numpy(g_means), torch.from_numpy(g_quats), torch.from_numpy(g_scales),
                None, None, None, None, None, None, None, None)


def project_gaussians_numba(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                            height: int, eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
                            antialiased: bool = False) -> Projection:
    """``project_gaussians(means, covariance_3d(quats, scales), viewmats, Ks, ...)`` in one compiled pass.

    Args:
        means ``[N, 3]``, quats ``[N, 4]`` (w, x, y, z; normalised here), scales ``[N, 3]`` (linear),
        viewmats ``[C, 4, 4]`` world-to-camera, Ks ``[C, 3, 3]``; float32 CPU tensors.
        antialiased: also return the opacity compensations ``[C, N]`` of the antialiased mode.

    Returns:
        the :class:`~render3d.splat.project.Projection`, differentiable w.r.t. means, quats and scales.
    """
    means2d, conics, depths, radii, comps = _ProjectFunction.apply(means, quats, scales, viewmats, Ks, width, height,
                                                                   float(eps2d), float(near_plane), float(far_plane),
                                                                   bool(antialiased))
    return Projection(means2d=means2d, conics=conics, depths=depths, radii=radii, compensations=comps if antialiased else None)


@njit(inline=True)
def _sh_bases(degree, x, y, z, out):
    """Real SH basis values ``out [(degree + 1)^2]`` at the unit direction ``(x, y, z)`` (3DGS order)."""
    out[0] = C0
    if degree >= 1:
        out[1], out[2], out[3] = -C1 * y, C1 * z, -C1 * x
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out[4], out[5], out[6] = C2[0] * x * y, C2[1] * y * z, C2[2] * (2.0 * zz - xx - yy)
        out[7], out[8] = C2[3] * x * z, C2[4] * (xx - yy)
    if degree >= 3:
        xx, yy, zz = x * x, y * y, z * z
        out[9], out[10] = C3[0] * y * (3.0 * xx - yy), C3[1] * x * y * z
        out[11], out[12] = C3[2] * y * (4.0 * zz - xx - yy), C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
        out[13], out[14] = C3[4] * x * (4.0 * zz - xx - yy), C3[5] * z * (xx - yy)
        out[15] = C3[6] * x * (xx - 3.0 * yy)


@njit(inline=True)
def _sh_bases_backward(degree, x, y, z, g):
    """``dL/d(x, y, z)`` from the gradients ``g`` of the basis values."""
    gx = gy = gz = 0.0
    if degree >= 1:
        gx, gy, gz = -C1 * g[3], -C1 * g[1], C1 * g[2]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        gx += C2[0] * y * g[4] - 2.0 * C2[2] * x * g[6] + C2[3] * z * g[7] + 2.0 * C2[4] * x * g[8]
        gy += C2[0] * x * g[4] + C2[1] * z * g[5] - 2.0 * C2[2] * y * g[6] - 2.0 * C2[4] * y * g[8]
        gz += C2[1] * y * g[5] + 4.0 * C2[2] * z * g[6] + C2[3] * x * g[7]
    if degree >= 3:
        xx, yy, zz = x * x, y * y, z * z
        gx += (C3[0] * 6.0 * x * y * g[9] + C3[1] * y * z * g[10] - C3[2] * 2.0 * x * y * g[11] - C3[3] * 6.0 * x * z * g[12]
               + C3[4] * (4.0 * zz - 3.0 * xx - yy) * g[13] + C3[5] * 2.0 * x * z * g[14] + C3[6] * 3.0 * (xx - yy) * g[15])
        gy += (C3[0] * 3.0 * (xx - yy) * g[9] + C3[1] * x * z * g[10] + C3[2] * (4.0 * zz - xx - 3.0 * yy) * g[11]
               - C3[3] * 6.0 * y * z * g[12] - C3[4] * 2.0 * x * y * g[13] - C3[5] * 2.0 * y * z * g[14] - C3[6] * 6.0 * x * y * g[15])
        gz += (C3[1] * x * y * g[10] + C3[2] * 8.0 * y * z * g[11] + C3[3] * (6.0 * zz - 3.0 * xx - 3.0 * yy) * g[12]
               + C3[4] * 8.0 * x * z * g[13] + C3[5] * (xx - yy) * g[14])
    return gx, gy, gz


@njit(inline=True)
def _direction(means, centers, g, c):
    """Unit direction from camera ``c`` to Gaussian ``g`` and the distance (clamped at 1e-12)."""
    dx, dy, dz = means[g, 0] - centers[c, 0], means[g, 1] - centers[c, 1], means[g, 2] - centers[c, 2]
    length = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
    return dx / length, dy / length, dz / length, length


@njit(parallel=True)
def _sh_forward(means, coeffs, degree, centers, out):
    """``out [C, N, 3] = max(SH(d) . coeffs + 0.5, 0)``."""
    n, n_bases = means.shape[0], (degree + 1) * (degree + 1)
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):
        bases = np.empty(16)
        for g in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            for c in range(centers.shape[0]):
                x, y, z, _ = _direction(means, centers, g, c)
                _sh_bases(degree, x, y, z, bases)
                for ch in range(3):
                    acc = 0.0
                    for k in range(n_bases):
                        acc += bases[k] * coeffs[g, k, ch]
                    out[c, g, ch] = max(acc + 0.5, 0.0)


@njit(parallel=True)
def _sh_backward(means, coeffs, degree, centers, grad, g_means, g_coeffs):
    """Gradients of :func:`_sh_forward` back to ``means`` and ``coeffs`` (zeros on entry)."""
    n, n_bases = means.shape[0], (degree + 1) * (degree + 1)
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):
        bases, g_bases = np.empty(16), np.zeros(16)
        for g in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            for c in range(centers.shape[0]):
                x, y, z, length = _direction(means, centers, g, c)
                _sh_bases(degree, x, y, z, bases)
                g_bases[:] = 0.0
                for ch in range(3):
                    acc = 0.0
                    for k in range(n_bases):
                        acc += bases[k] * coeffs[g, k, ch]
                    if acc + 0.5 < 0.0:  # clamped at 0
                        continue
                    for k in range(n_bases):
                        g_coeffs[g, k, ch] += bases[k] * grad[c, g, ch]
                        g_bases[k] += coeffs[g, k, ch] * grad[c, g, ch]
                gx, gy, gz = _sh_bases_backward(degree, x, y, z, g_bases)
                dot = x * gx + y * gy + z * gz  # d = v / |v|: dL/dv = (dL/dd - d (d . dL/dd)) / |v|
                g_means[g, 0] += (gx - x * dot) / length
                g_means[g, 1] += (gy - y * dot) / length
                g_means[g, 2] += (gz - z * dot) / length


class _ShColorsFunction(torch.autograd.Function):
    """Autograd wrapper of the SH colour kernels."""

    @staticmethod
    def forward(ctx, means: Tensor, coeffs: Tensor, degree: int, centers: Tensor) -> Tensor:  # type: ignore[override]
        arrays = (_numpy(means), _numpy(coeffs), degree, _numpy(centers))
        out = np.empty((len(centers), len(means), 3), np.float32)
        with launch():
            _sh_forward(*arrays, out)
        ctx.arrays = arrays
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        means, coeffs = ctx.arrays[0], ctx.arrays[1]
        g_means, g_coeffs = np.zeros_like(means), np.zeros_like(coeffs)
        with launch():
            _sh_backward(*ctx.arrays, _numpy(grad), g_means, g_coeffs)
        return torch.from_numpy(g_means), torch.from_numpy(g_coeffs), None, None


def sh_colors_numba(means: Tensor, coeffs: Tensor, sh_degree: int, camera_centers: Tensor) -> Tensor:
    """:func:`render3d.splat.render.sh_colors` compiled: colours ``[C, N, 3]`` from SH ``coeffs [N, K, 3]``
    (the first ``(sh_degree + 1)^2`` used), seen from ``camera_centers [C, 3]``; differentiable w.r.t.
    means and coeffs."""
    if not 0 <= sh_degree <= 3 or coeffs.shape[1] < (sh_degree + 1) ** 2:
        raise ValueError(f"SH degree {sh_degree} needs {(sh_degree + 1) ** 2} coefficients, got {coeffs.shape[1]}")
    return _ShColorsFunction.apply(means, coeffs, int(sh_degree), camera_centers)
