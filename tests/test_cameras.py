"""Cameras: rays, resizing, look-at and convention conversions."""

from __future__ import annotations

import torch

from render3d.cameras import Cameras, intrinsics_matrix, look_at, opencv_to_opengl, opengl_to_opencv, undistort_points


def simple_camera(width=40, height=30) -> Cameras:
    c2w = look_at(torch.tensor([0.0, -5.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    return Cameras(intrinsics_matrix(50.0, 50.0, width / 2, height / 2), c2w, width, height)


def test_look_at_is_a_right_handed_opencv_frame():
    cam = simple_camera()
    R = cam.c2w[0, :3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(R) > 0.99
    torch.testing.assert_close(R[:, 2], torch.tensor([0.0, 1.0, 0.0]))  # +z looks at the target
    torch.testing.assert_close(R[:, 1], torch.tensor([0.0, 0.0, -1.0]))  # +y (image down) is world down


def test_center_ray_hits_the_target_and_corner_rays_diverge():
    cam = simple_camera()
    origins, dirs = cam.generate_rays(0)
    assert origins.shape == dirs.shape == (30, 40, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(30, 40))
    center = 0.5 * (dirs[14, 19] + dirs[15, 20])
    center = center / center.norm()
    assert torch.allclose(center, torch.tensor([0.0, 1.0, 0.0]), atol=2e-3)
    # a pixel to the right has a ray with positive world x (camera +x = world +x here)
    assert dirs[15, 39, 0] > 0 and dirs[15, 0, 0] < 0
    # a pixel lower in the image points down (-z)
    assert dirs[29, 20, 2] < 0


def test_projecting_a_ray_point_lands_on_its_pixel():
    cam = simple_camera()
    origins, dirs = cam.generate_rays(0)
    point = origins[7, 11] + 3.0 * dirs[7, 11]
    cam_pt = cam.viewmats[0, :3, :3] @ point + cam.viewmats[0, :3, 3]
    uv = (cam.K[0] @ (cam_pt / cam_pt[2]))[:2]
    torch.testing.assert_close(uv, torch.tensor([11.5, 7.5]), atol=1e-4, rtol=0)


def test_scaled_keeps_the_field_of_view():
    cam = simple_camera(40, 30)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (20, 15)
    torch.testing.assert_close(half.fov_y(), cam.fov_y())


def test_opengl_conversion_round_trips_and_flips_view_axis():
    c2w_gl = torch.eye(4)
    c2w_gl[:3, 3] = torch.tensor([0.0, 0.0, 4.0])  # OpenGL camera at +z looking down -z
    c2w_cv = opengl_to_opencv(c2w_gl)
    torch.testing.assert_close(c2w_cv[:3, 2], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(opencv_to_opengl(c2w_cv), c2w_gl)


def test_undistort_inverts_the_distortion_model():
    coeffs = torch.tensor([0.1, -0.05, 0.001, 0.002])
    x, y = torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.25])
    r2 = x * x + y * y
    radial = 1 + coeffs[0] * r2 + coeffs[1] * r2 * r2
    xd = x * radial + 2 * coeffs[2] * x * y + coeffs[3] * (r2 + 2 * x * x)
    yd = y * radial + coeffs[2] * (r2 + 2 * y * y) + 2 * coeffs[3] * x * y
    xu, yu = undistort_points(xd, yd, coeffs)
    torch.testing.assert_close(xu, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(yu, y, atol=1e-5, rtol=0)


def test_indexing_and_device_moves():
    cams = Cameras(intrinsics_matrix(10, 10, 5, 5), torch.eye(4).expand(3, 4, 4).clone(), 10, 10)
    assert len(cams) == 3 and len(cams[1]) == 1 and len(cams[[0, 2]]) == 2
    assert cams.to("cpu").K.dtype == torch.float32


def test_project_lands_a_ray_back_on_its_pixel_with_and_without_distortion():
    for distortion in (None, torch.tensor([[0.08, -0.03, 0.002, -0.001]])):
        cam = Cameras(simple_camera().K, simple_camera().c2w, 40, 30, distortion)
        px, py = torch.tensor([0, 7, 39, 20]), torch.tensor([0, 22, 29, 15])
        origins, dirs = cam.rays_at_pixels(torch.zeros(4, dtype=torch.long), px, py)
        points = origins + dirs * 3.0
        u, v, z = cam.project(points, 0)
        torch.testing.assert_close(u, px.float() + 0.5, atol=2e-3, rtol=0)
        torch.testing.assert_close(v, py.float() + 0.5, atol=2e-3, rtol=0)
        assert (z > 0).all()
        u_all, _, _ = cam.project(points)  # every camera at once: [C, N]
        assert u_all.shape == (1, 4) and torch.equal(u_all[0], u)
