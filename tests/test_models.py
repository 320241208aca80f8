"""Embedders load their real pretrained weights: checked by ImageNet labels on real photos."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from simsearch.errors import InvalidArgument, WeightsNotFound
from simsearch.models import (
    EmbedderSpec,
    _normalise,
    create_embedder,
    list_embedders,
    register_embedder,
)

from .conftest import REPO

pytest.importorskip("torch")
pytest.importorskip("timm")

CATS = {281, 282, 283, 284, 285, 383}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, Madagascar cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


def _photo(name):
    return Image.open(REPO / "samples" / "images" / name).convert("RGB")


@pytest.fixture(scope="module")
def lite0():
    return create_embedder("efficientnet_lite0")


def test_weights_are_the_real_imagenet_ones(lite0):
    probs = lite0.classify([_photo("chelsea.png"), _photo("coffee.png")])
    assert int(probs[0].argmax()) in CATS and probs[0].max() > 0.5
    assert int(probs[1].argmax()) in COFFEE and probs[1].max() > 0.5


@pytest.mark.parametrize("spec", list_embedders(), ids=lambda s: s.name)
def test_every_registered_embedder_gives_unit_vectors_of_its_dimension(spec):
    vectors = create_embedder(spec.name).encode([_photo("rocket.jpg"), _photo("brick.png")])
    assert vectors.shape == (2, spec.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_edited_copies_embed_close_and_other_photos_far(lite0):
    chelsea = _photo("chelsea.png")
    edited = ImageOps.grayscale(chelsea.resize((220, 146))).convert("RGB")
    v = lite0.encode([chelsea, edited, _photo("brick.png")])
    assert v[0] @ v[1] > 0.8 and v[0] @ v[2] < 0.5


def test_wrong_or_missing_weights_fail_loudly(tmp_path):
    with pytest.raises(WeightsNotFound, match="cannot read weights"):
        create_embedder("efficientnet_lite0", weights=str(tmp_path / "missing.pth"))
    spec = EmbedderSpec("absent_model", "none", 224, (0.5,) * 3, (0.5,) * 3, 8, "nowhere", "no_such_weights_pkg")
    assert not spec.weights_available()
    with pytest.raises(InvalidArgument, match="unknown embedder"):
        create_embedder("absent_model")
    with pytest.raises(InvalidArgument, match="already registered"):
        register_embedder(list_embedders()[0])(lambda spec, weights=None: None)


def test_running_out_of_memory_shrinks_batches_for_that_call_only(lite0, monkeypatch):
    real, sizes = lite0._runner, []

    def tight(pixels):  # the real network, on a device that holds at most 2 images
        sizes.append(len(pixels))
        if len(pixels) > 2:
            raise MemoryError
        return real(pixels)

    monkeypatch.setattr(lite0, "_runner", tight)
    before = lite0.batch_size
    vectors = lite0.encode([_photo("chelsea.png")] * 5)
    assert sizes[:3] == [5, 4, 2] and sum(s for s in sizes if s <= 2) == 5  # halved until it fits, none lost
    assert lite0.batch_size == before  # the next call starts from the full batch again
    assert np.allclose(vectors, vectors[0], atol=1e-5) and np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-4)


def test_network_input_is_the_plain_normalisation_bit_for_bit(lite0):
    """The ONNX input turns the bytes before the float steps: the same values as converting first."""
    pixels = np.random.default_rng(4).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    spec = lite0.spec
    plain = (pixels.astype(np.float32) * np.float32(1 / 255) - np.asarray(spec.mean, np.float32)) / np.asarray(
        spec.std, np.float32)
    want = np.ascontiguousarray(plain.transpose(0, 3, 1, 2))
    got = _normalise(pixels, spec)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.tobytes() == want.tobytes()


def test_constant_padding_gives_the_same_values_bit_for_bit(lite0):
    """The exported network pads by constants for its input size: the same values, bit for bit, as timm's
    network working its "same" padding out at run time."""
    import torch

    from simsearch.models import _EmbeddingNet, _fixed_padding

    build = lambda: _EmbeddingNet(lite0._entry.build(lite0.spec, lite0._weights_path)).eval()  # noqa: E731
    plain, fixed = build(), _fixed_padding(build(), 224)
    pixels = np.random.default_rng(5).integers(0, 256, (2, 224, 224, 3), np.uint8)
    x = torch.from_numpy(_normalise(pixels, lite0.spec))
    with torch.inference_mode():
        assert all(torch.equal(a, b) for a, b in zip(plain(x), fixed(x)))


def test_onnx_runtime_folds_every_pad_of_the_graph_into_a_convolution(lite0, tmp_path):
    """What ONNX Runtime makes of the exported graph has no Pad left: each went into its convolution's own
    padding."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if lite0.backend != "onnx":
        pytest.skip("the embedder runs on torch here")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(lite0._runner.session._model_path, options, providers=["CPUExecutionProvider"])
    kinds = {node.op_type for node in onnx.load(str(tmp_path / "optimised.onnx")).graph.node}
    assert "Conv" in kinds and "Pad" not in kinds
