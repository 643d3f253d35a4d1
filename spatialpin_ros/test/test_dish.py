"""Low and round shapes (perception/shapes): a plate is a dish, not a flat thing lying on the
table (shapes._dish, read by GeometricBackend.assemble_priors): its top is a rim around a lower
middle; a phone's solid top and a pen's narrow strip are no dish. A bottle is no ball much
wider than itself (ShapeParams.ball_width)."""

from pathlib import Path

import numpy as np

from spatialpin_ros.perception.shapes import ShapeParams, fit_shape
from test_pieces_containers import _plate

RNG = np.random.default_rng(13)
CAMERA = np.array([0.0, 0.0, 0.6])


def test_a_plate_is_a_dish():
    _, _, Q = _plate(centre=(0.5, 0.0), rim_h=0.019, noise=0.0005)
    f = fit_shape(Q, 0.0005, ShapeParams(), CAMERA)
    assert f.top < 0.022 and not f.container and f.dish


def test_a_phone_and_a_pen_are_no_dish():
    phone = np.column_stack([RNG.uniform(0.45, 0.52, 3000), RNG.uniform(-0.08, 0.08, 3000),
                             RNG.normal(0.009, 0.0005, 3000)])
    assert not fit_shape(phone, 0.0005, ShapeParams(), CAMERA).dish
    a = RNG.uniform(0, np.pi, 2000)                  # a pen lying down: a half cylinder
    pen = np.column_stack([RNG.uniform(0.45, 0.6, 2000), 0.008 * np.cos(a),
                           0.008 + 0.008 * np.sin(a)])
    assert not fit_shape(pen, 0.0005, ShapeParams(), CAMERA).dish


def test_a_bottle_under_noise_is_no_ball_wider_than_it():
    """A white bottle's points under D435 noise (development scene 3044; plane frame) fit a
    sphere 22 cm across: no ball is that much wider than the object's footprint."""
    d = np.load(Path(__file__).parent / "data" / "bottle_fits_a_sphere.npz")
    Q = d["Q"].astype(np.float64)
    f = fit_shape(Q, float(d["noise"]), ShapeParams(), d["camera"])
    assert f.shape != "sphere" and max(f.size_uv) < 0.1
    assert fit_shape(Q, float(d["noise"]), ShapeParams(ball_width=0.0), d["camera"]).shape \
        == "sphere"                                   # the check that rules it out
