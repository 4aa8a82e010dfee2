"""Networks at any size: every backend streams the training rows in chunks of
``batch_size`` and gives the single-chunk answer; dense curvature over the
memory budget is refused before it is allocated."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator

torch = pytest.importorskip("torch")

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.curvature import (  # noqa: E402
    CGCurvature,
    ExactCurvature,
    GGNCurvature,
    LiSSACurvature,
    LowRankCurvature,
)
from skinfluence.models import make_adapter  # noqa: E402

BACKENDS = {
    "exact": "exact",
    "ggn": "ggn",
    "cg": "cg",
    "cg-ggn": CGCurvature(operator="ggn"),
    "lissa": LiSSACurvature(depth=50, batch_size=16, random_state=0),
    "diagonal": "diagonal",
    "kfac": "kfac",
    "ekfac": "ekfac",
    "blockggn": "blockggn",
    "lowrank": LowRankCurvature(rank=5, random_state=0),
    "ef": "ef",
    "identity": "identity",
}


@pytest.fixture(scope="module")
def small_net(digits):
    Xtr, Xte, ytr, yte = digits
    Xtr, ytr = Xtr[:60], ytr[:60]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 6), torch.nn.Tanh(), torch.nn.Linear(6, 10)
    )
    clf = TorchClassifier(mlp, weight_decay=1e-2, random_state=0, max_iter=300)
    return clf.fit(Xtr, ytr), Xtr, ytr, Xte[:3], yte[:3]


@pytest.mark.parametrize("name", list(BACKENDS))
def test_multi_chunk_equals_single_chunk(small_net, name):
    clf, Xtr, ytr, Xq, yq = small_net
    results = []
    for batch_size in (None, 25):  # 60 rows: one chunk, then three
        scorer = InfluenceScorer(
            FrozenEstimator(clf),
            curvature=BACKENDS[name],
            damping=1e-2,
            batch_size=batch_size,
            random_state=0,
        ).fit(Xtr, ytr)
        results.append(
            (scorer.influence(Xq, yq), scorer.self_influence_, scorer.grad_norm_)
        )
    (S1, s1, g1), (S7, s7, g7) = results
    assert S1.shape == (3, 60)
    # iterative solvers amplify the rounding of a different summation order
    # up to their tolerance (CG: rtol=1e-8 on the residual)
    rtol = 1e-5 if name.startswith("cg") else 1e-7
    assert_allclose(S7, S1, rtol=rtol, atol=rtol * 1e-3 * np.abs(S1).max())
    assert_allclose(s7, s1, rtol=rtol, atol=rtol * 1e-3 * np.abs(s1).max())
    assert_allclose(g7, g1, rtol=1e-7)


def test_adapter_products_stream_rows(small_net):
    clf, Xtr, ytr, Xq, yq = small_net
    one = make_adapter(clf, Xtr, ytr)
    many = make_adapter(clf, Xtr, ytr, batch_size=4)
    V = np.random.default_rng(0).standard_normal((one.n_params, 3))
    for method in ("hessian_matvec", "ggn_matvec"):
        assert_allclose(getattr(many, method)(V), getattr(one, method)(V), rtol=1e-9)
        rows = np.arange(5, 40)
        assert_allclose(
            getattr(many, method)(V, rows), getattr(one, method)(V, rows), rtol=1e-9
        )
    assert_allclose(many.loss(Xq, yq), one.loss(Xq, yq), rtol=1e-12)
    assert_allclose(many.prediction(Xtr), one.prediction(Xtr), rtol=1e-12)
    assert_allclose(many.objective_grad(), one.objective_grad(), atol=1e-12)
    Q = V.T[:2]
    assert_allclose(
        many.input_grad_products(Q, slice(0, 10)),
        one.input_grad_products(Q, slice(0, 10)),
        rtol=1e-9,
        atol=1e-14,
    )
    J1, M1 = one.row_curvature(slice(0, 9))
    J4, M4 = many.row_curvature(slice(0, 9))
    assert_allclose(J4, J1, rtol=1e-12)
    assert_allclose(M4, M1, rtol=1e-12)


class _Huge:
    """An adapter whose dense curvature must never be asked for."""

    n_params = 200_000
    n_train = 10

    def hessian_matrix(self):
        raise AssertionError("allocated a dense matrix over the budget")

    ggn_matrix = hessian_matrix

    def hessian_operator(self):
        raise AssertionError("assembled a dense matrix over the budget")

    ggn_operator = hessian_operator


@pytest.mark.parametrize("backend", [ExactCurvature(), GGNCurvature()])
def test_dense_curvature_over_budget_is_refused_before_allocating(backend):
    # 200,000 parameters: a 298 GiB matrix; refused with the size, the budget
    # and a backend that fits.
    with pytest.raises(ValueError, match=r"200000 x 200000.*298 GiB.*1 GiB.*'cg'"):
        backend.fit(_Huge(), damping=1e-3)


def test_dense_assembly_respects_a_lowered_budget(small_net, monkeypatch):
    from skinfluence import _constants

    clf, Xtr, ytr, _, _ = small_net
    adapter = make_adapter(clf, Xtr, ytr)
    monkeypatch.setattr(
        _constants, "DENSE_MEMORY_BUDGET_BYTES", 8 * adapter.n_params**2 - 1
    )
    with pytest.raises(ValueError, match="dense memory budget"):
        adapter.ggn_matrix()
    with pytest.raises(ValueError, match="dense memory budget"):
        InfluenceScorer(FrozenEstimator(clf), curvature="exact").fit(Xtr, ytr)
    # matrix-free backends still run
    InfluenceScorer(FrozenEstimator(clf), curvature="cg", damping=1e-2).fit(Xtr, ytr)


def test_block_ggn_over_budget_is_refused_before_assembly(small_net, monkeypatch):
    from skinfluence import _constants
    from skinfluence.curvature import BlockGGNCurvature

    clf, Xtr, ytr, _, _ = small_net
    adapter = make_adapter(clf, Xtr, ytr)
    sizes = [len(b) for _, b in adapter.parameter_blocks("layer")]
    monkeypatch.setattr(
        _constants, "DENSE_MEMORY_BUDGET_BYTES", 8 * sum(s * s for s in sizes) - 1
    )
    monkeypatch.setattr(
        type(adapter), "ggn_blocks", lambda *a, **k: pytest.fail("assembled")
    )
    with pytest.raises(ValueError, match=rf"largest {max(sizes)} x {max(sizes)}"):
        BlockGGNCurvature().fit(adapter, damping=1e-3)
