import numpy as np
import pytest

import fastrelu as fr


def test_valid_domains():
    assert fr.Sphere(3).radius == 1.0
    assert fr.Ball(4, 2.5, nonnegative=True).nonnegative
    assert fr.Shell(2, 0.5, 2.0).outer_radius == 2.0
    assert len(fr.Data(np.ones((5, 2)))) == 5


@pytest.mark.parametrize("make, match", [
    (lambda: fr.Sphere(3, radius=0.0), "'radius' parameter must be a finite real number > 0"),
    (lambda: fr.Ball(3, radius=-1.0), "'radius' parameter must be a finite real number > 0"),
    (lambda: fr.Sphere(0), "'dim' parameter must be an integer >= 1"),
    (lambda: fr.Shell(3, 2.0, 1.0), "must not exceed its 'outer' radius"),
    (lambda: fr.Shell(3, -1.0, 1.0), "'inner' parameter must be a finite real number >= 0"),
    (lambda: fr.Data(np.array([[1.0, np.inf]])), "finite"),
    (lambda: fr.Data(np.ones(3)), "2-D"),
])
def test_domain_validation(make, match):
    with pytest.raises(fr.FastReluError, match=match):
        make()


def test_data_keeps_a_private_copy_of_the_points():
    X = np.ones((3, 3))
    domain = fr.Data(X)
    X[0, 0] = 7.0  # the caller's array stays writeable and the domain does not change
    assert domain.points[0, 0] == 1.0 and not domain.points.flags.writeable
