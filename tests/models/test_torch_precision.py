"""Precision and device of network computations: float32 agrees with float64
to the float32 rounding amplified by the curvature's condition number; CUDA is
used when asked and refused clearly where there is none."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.models import TorchAdapter, make_adapter  # noqa: E402

DAMPING = 1e-2


@pytest.fixture(scope="module")
def net(wine):
    X, Xte, y, yte = wine
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(13, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    )
    clf = TorchClassifier(mlp, weight_decay=1e-2, random_state=0, max_iter=300)
    return clf.fit(X, y), X, y, Xte[:6], yte[:6]


@pytest.mark.parametrize("curvature", ["ggn", "cg", "ekfac"])
def test_float32_agrees_with_float64(net, curvature):
    clf, X, y, Xq, yq = net
    runs = {}
    for dtype in ("float64", "float32"):
        scorer = InfluenceScorer(
            FrozenEstimator(clf),
            curvature=curvature,
            damping=DAMPING,
            dtype=dtype,
            random_state=0,
        ).fit(X, y)
        assert scorer.adapter_._X.dtype == getattr(torch, dtype)
        runs[dtype] = scorer.influence(Xq, yq)
    S64, S32 = runs["float64"], runs["float32"]
    assert S32.dtype == np.float64
    # forward error of a solve: rounding of the products (float32 eps) times
    # the condition number of the damped curvature, from the float64 GGN
    G = make_adapter(clf, X, y).ggn_matrix()
    w = np.linalg.eigvalsh(G + DAMPING * np.eye(len(G)))
    cond = w[-1] / w[0]
    bound = 10 * cond * np.finfo(np.float32).eps
    err = np.linalg.norm(S32 - S64) / np.linalg.norm(S64)
    assert 0 < err <= bound, (err, bound, cond)
    assert np.corrcoef(S32.ravel(), S64.ravel())[0, 1] > 0.9999


def test_adapter_accepts_dtype_names_and_refuses_others(net):
    clf, X, y, _, _ = net
    a = make_adapter(clf, X, y, dtype="float32")
    assert a.dtype is torch.float32 and a._module[0].weight.dtype is torch.float32
    g32, g64 = (
        a.train_grads(slice(0, 5)),
        make_adapter(clf, X, y).train_grads(slice(0, 5)),
    )
    assert g32.dtype == np.float64
    assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * np.abs(g64).max())
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32'"):
        make_adapter(clf, X, y, dtype="float16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_cuda_is_refused_clearly_without_a_gpu(net):
    clf, X, y, _, _ = net
    for device in ("cuda", torch.device("cuda:0")):
        with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
            InfluenceScorer(FrozenEstimator(clf), device=device).fit(X, y)
    with pytest.raises(ValueError, match="device must be"):
        make_adapter(clf, X, y, device="gpu0")
    # the CPU, named either way, is the default
    S = InfluenceScorer(FrozenEstimator(clf), curvature="ggn", damping=DAMPING)
    S1 = S.fit(X, y).influence(X[:2], y[:2])
    S.set_params(device=torch.device("cpu"))
    assert_allclose(S.fit(X, y).influence(X[:2], y[:2]), S1)


def test_precision_is_for_networks_only(wine):
    X, _, y, _ = wine
    with pytest.raises(ValueError, match="dtype and device apply to torch networks"):
        InfluenceScorer(LogisticRegression(), dtype="float32").fit(X, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("curvature", ["ggn", "cg"])
def test_cuda_agrees_with_cpu(net, curvature):
    clf, X, y, Xq, yq = net
    runs = [
        InfluenceScorer(
            FrozenEstimator(clf), curvature=curvature, damping=DAMPING, device=device
        )
        .fit(X, y)
        .influence(Xq, yq)
        for device in ("cpu", "cuda")
    ]
    assert_allclose(runs[1], runs[0], rtol=1e-6, atol=1e-9 * np.abs(runs[0]).max())


def test_direct_adapter_on_the_cpu_device():
    X = np.random.default_rng(0).standard_normal((10, 2))
    t = X.sum(axis=1)
    a = TorchAdapter(
        torch.nn.Linear(2, 1), torch.nn.MSELoss(), X, t, kind="regression", device="cpu"
    )
    assert a.device == torch.device("cpu") and a._X.device.type == "cpu"
