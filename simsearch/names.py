"""The names every part agrees on (methods, levels, defaults), in a module light enough for the
command line to import before it knows what it will do (``simsearch --help`` loads no NumPy)."""

HASH_METHODS = ("phash", "dhash", "whash", "ahash")
OK, FAILED, REMOVED = "ok", "failed", "removed"  # image status values
SEARCH_METHODS = ("auto", "embedding") + HASH_METHODS
DUPLICATE_METHODS = ("auto", "exact", "embedding") + HASH_METHODS
LEVELS = ("copy", "scene")
DEFAULT_EMBEDDER = "efficientnet_lite0"
DEFAULT_INDEX_DIR = ".simsearch"
BACKENDS = ("auto", "onnx", "torch")  # how the embedders and taggers run
ANN_KINDS = ("auto", "flat", "ivf")  # the vector indexes
MAX_SEED = 2**32 - 1  # clustering's seed: the kmedoids solver's NumPy RandomState takes no more
SKIP_MARKER = ".simsearch-skip"  # a folder holding this file is not walked: simsearch's own (``store.mark_not_indexed``)
