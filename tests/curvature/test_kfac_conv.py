"""K-FAC, EK-FAC and block GGN for convolutions (and other weight sharing).

Ground truth is the adapter's dense Gauss-Newton matrix, assembled from
Jacobian-vector products of the whole network (``ggn_matrix``), independent
of the layer hooks and input unfolding the Kronecker statistics use.

* Exact: a convolution whose every output is a least-squares target has
  uncorrelated, position-independent output derivatives, so the KFC factors
  ``S (x) A`` are its Gauss-Newton block; a convolution with one output
  position is a linear layer.
* Always exact: the block GGN from per-sample (position-summed) gradients,
  the GGN diagonal, and EK-FAC's ``diag(Q^T G_l Q)``.
* Approximate: K-FAC on a CNN; EK-FAC is never further from the block than
  K-FAC (it is the best diagonal in the same basis).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import pearsonr
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator

torch = pytest.importorskip("torch")

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.curvature import (  # noqa: E402
    BlockGGNCurvature,
    EKFACCurvature,
    KFACCurvature,
)
from skinfluence.models import TorchAdapter  # noqa: E402


@pytest.fixture(scope="module")
def images():
    X, y = load_digits(return_X_y=True)
    return (X[:48] / 16.0).reshape(-1, 1, 8, 8), y[:48]


def _cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(48, 10),
    )


def _sequence_net(seed=0):
    # an nn.Linear applied at 8 positions of each row, then a classifier
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (8, 8)),
        torch.nn.Linear(8, 3),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 10),
    )


def _adapter(net, X, y, penalty=0.0):
    return TorchAdapter(
        net,
        torch.nn.CrossEntropyLoss(),
        X,
        y,
        kind="multiclass",
        classes=np.arange(10),
        penalty=penalty,
    )


# -- exact cases ----------------------------------------------------------------


@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=1),
        dict(kernel_size=3),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 2), padding="same", dilation=(1, 2)),
        dict(kernel_size=3, padding=1, padding_mode="reflect", bias=False),
    ],
)
def test_kfac_type2_is_the_ggn_of_a_convolution_with_least_squares(images, conv):
    X = images[0]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, **conv), torch.nn.Flatten())
    with torch.no_grad():
        n_out = net(torch.as_tensor(X[:1], dtype=torch.float32)).shape[1]
    Y = np.random.default_rng(0).standard_normal((len(X), n_out))
    adapter = TorchAdapter(net, torch.nn.MSELoss(), X, Y, kind="regression")
    G = adapter.ggn_matrix()
    for backend in (KFACCurvature(fisher="type2"), EKFACCurvature(fisher="type2")):
        C = backend.fit(adapter, damping=1e-3).curvature_matrix()
        assert_allclose(C, G, atol=1e-12 * np.abs(G).max())


def test_a_convolution_with_one_output_position_is_a_linear_layer(images):
    X, y = images
    torch.manual_seed(0)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 8),
        torch.nn.Flatten(),
        torch.nn.Tanh(),
        torch.nn.Linear(4, 10),
    )
    dense = torch.nn.Sequential(torch.nn.Linear(64, 4), torch.nn.Tanh())
    dense.append(torch.nn.Linear(4, 10))
    with torch.no_grad():
        dense[0].weight.copy_(conv[0].weight.reshape(4, 64))
        dense[0].bias.copy_(conv[0].bias)
        dense[2].load_state_dict(conv[3].state_dict())
    a_conv = _adapter(conv, X, y)
    a_dense = _adapter(dense, X.reshape(len(X), 64), y)
    for backend in (KFACCurvature(fisher="type2"), EKFACCurvature(fisher="type2")):
        C_conv = backend.fit(a_conv, damping=1e-3).curvature_matrix()
        C_dense = backend.fit(a_dense, damping=1e-3).curvature_matrix()
        assert_allclose(C_conv, C_dense, atol=1e-13)


@pytest.mark.parametrize("make", [_cnn, _sequence_net], ids=["cnn", "sequence"])
def test_block_ggn_and_diagonal_of_shared_layers_are_the_ggns(images, make):
    X, y = images
    Xin = X if make is _cnn else X.reshape(len(X), 64)
    adapter = _adapter(make(), Xin, y, penalty=0.01)
    G = adapter.ggn_matrix()
    block = BlockGGNCurvature().fit(adapter, damping=1e-3)
    mask = np.zeros_like(G, dtype=bool)
    for _, idx in block.blocks_:
        mask[np.ix_(idx, idx)] = True
    assert len(block.blocks_) == 2
    assert_allclose(block.curvature_matrix(), np.where(mask, G, 0.0), atol=1e-14)
    assert_allclose(adapter.ggn_diagonal(), np.diag(G), atol=1e-14)


@pytest.mark.parametrize("make", [_cnn, _sequence_net], ids=["cnn", "sequence"])
def test_ekfac_eigenvalues_of_shared_layers_are_diag_QtGQ(images, make):
    X, y = images
    Xin = X if make is _cnn else X.reshape(len(X), 64)
    adapter = _adapter(make(), Xin, y)
    G = adapter.ggn_matrix()
    g = adapter.train_grads()
    F = g.T @ g / adapter.n_train  # the empirical Fisher
    for fisher, M in (("type2", G), ("empirical", F)):
        ekfac = EKFACCurvature(fisher=fisher).fit(adapter, damping=1e-3)
        for f in ekfac.factors_:
            idx, Q = f.layer.index, f.basis()
            brute = np.diag(Q.T @ M[np.ix_(idx, idx)] @ Q)
            assert_allclose(f.eigenvalues.ravel(), brute, atol=1e-14)


def test_kfac_approximates_the_conv_block_and_ekfac_is_closer(images):
    X, y = images
    adapter = _adapter(_cnn(), X, y)
    G = adapter.ggn_matrix()
    kfac = KFACCurvature(fisher="type2").fit(adapter, damping=1e-3)
    ekfac = EKFACCurvature(fisher="type2").fit(adapter, damping=1e-3)
    Ck, Ce = kfac.curvature_matrix(), ekfac.curvature_matrix()
    conv = kfac.factors_[0]
    assert conv.layer.name == "0" and conv.layer.size == 3 * 10
    for f in kfac.factors_:
        idx = np.ix_(f.layer.index, f.layer.index)
        err_k = np.linalg.norm(Ck[idx] - G[idx]) / np.linalg.norm(G[idx])
        err_e = np.linalg.norm(Ce[idx] - G[idx]) / np.linalg.norm(G[idx])
        assert err_e <= err_k + 1e-12
    idx = np.ix_(conv.layer.index, conv.layer.index)
    # not exact here: ReLU and cross-entropy correlate the positions
    assert np.linalg.norm(Ck[idx] - G[idx]) / np.linalg.norm(G[idx]) > 1e-3


def test_kfac_conv_factors_are_patch_moments(images):
    # A is the second moment of the unfolded patches (with a ones column),
    # averaged over rows and positions: checked against a direct unfold.
    X, y = images
    net = _cnn()
    adapter = _adapter(net, X, y)
    kfac = KFACCurvature(fisher="empirical").fit(adapter, damping=1e-3)
    f = kfac.factors_[0]
    P = torch.nn.functional.unfold(
        torch.as_tensor(X), kernel_size=3, stride=2, padding=1
    ).transpose(1, 2)
    P = np.concatenate([P.numpy(), np.ones((*P.shape[:2], 1))], axis=-1)
    P = P.reshape(-1, 10)
    A = (f.Q_A * f.eig_A) @ f.Q_A.T
    assert_allclose(A, P.T @ P / len(P), atol=1e-14)


def test_auto_damping_is_per_layer_on_a_cnn(images):
    X, y = images
    adapter = _adapter(_cnn(), X, y)
    ekfac = EKFACCurvature(fisher="type2").fit(adapter, damping="auto")
    means = [f.eigenvalues.mean() for f in ekfac.factors_]
    assert_allclose(ekfac.layer_damping_, 0.1 * np.array(means))
    assert not np.isclose(*ekfac.layer_damping_)


# -- refusals -------------------------------------------------------------------


def test_grouped_and_other_convolutions_are_refused_with_the_alternatives(images):
    X, y = images
    grouped = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.Conv2d(2, 2, 3, groups=2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    with pytest.raises(ValueError, match=r"'1' is a grouped convolution.*blockggn"):
        KFACCurvature().fit(_adapter(grouped, X, y))
    conv1d = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 64)),
        torch.nn.Conv1d(1, 2, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(124, 10),
    )
    adapter = _adapter(conv1d, X.reshape(len(X), 64), y)
    with pytest.raises(TypeError, match=r"'1' \(Conv1d\).*blockggn"):
        EKFACCurvature().fit(adapter)
    # the block GGN falls back to per-sample Jacobians there
    G = adapter.ggn_matrix()
    block = BlockGGNCurvature().fit(adapter)
    idx = block.blocks_[0][1]
    assert_allclose(block.curvature_matrix()[np.ix_(idx, idx)], G[np.ix_(idx, idx)])


# -- end to end -----------------------------------------------------------------


def test_influence_of_a_cnn_on_images_with_ekfac_tracks_the_ggn():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8)
    Xtr, ytr, Xq, yq = X[:120], y[:120], X[120:130], y[120:130]
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(144, 10),
    )
    clf = TorchClassifier(cnn, weight_decay=1e-2, tol=1e-3, random_state=0)
    # the scorer trains the network on (n, 1, 8, 8) images
    scorer = InfluenceScorer(clf, curvature="ekfac", damping=1e-2, random_state=0)
    S_e = scorer.fit(Xtr, ytr).influence(Xq, yq)
    assert S_e.shape == (10, 120) and np.all(np.isfinite(S_e))
    assert scorer.score(Xtr, ytr) > 0.9
    frozen = FrozenEstimator(scorer.estimator_)

    def scores(curvature):
        scorer = InfluenceScorer(frozen, curvature=curvature, damping=1e-2)
        return scorer.fit(Xtr, ytr).influence(Xq, yq)

    S_ggn = scores("ggn")
    S_e2 = scores(EKFACCurvature(fisher="type2"))
    S_k2 = scores(KFACCurvature(fisher="type2"))
    r = [pearsonr(S.ravel(), S_ggn.ravel())[0] for S in (S_e, S_e2, S_k2)]
    assert r[0] > 0.5 and r[1] > 0.7 and r[2] > 0.6, r
