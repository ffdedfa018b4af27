import torch

import attention_variants as av
from bench.measurement.memory import peak_memory


def test_known_allocations_are_counted_exactly():
    def allocate():
        a = torch.empty(1000)  # 4000 B
        b = torch.empty(500, dtype=torch.float64)  # 4000 B: live 8000
        del a  # live 4000
        c = torch.empty(1500)  # 6000 B: live 10000
        return b, c

    assert peak_memory(allocate) == 10_000


def test_views_inplace_ops_and_existing_tensors_are_free():
    x = torch.randn(256)

    def no_new_storage(t):
        t.mul_(2)
        return t.view(16, 16).transpose(0, 1)

    assert peak_memory(no_new_storage, x) == 0
    assert peak_memory(lambda t: t * 2, x) == 256 * 4


def test_naive_attention_peak_holds_the_score_matrix_and_sdpa_does_not():
    b, c, h, w, heads = 2, 32, 16, 16, 4
    n = h * w
    scores_bytes = b * heads * n * n * 4
    x = torch.randn(b, c, h, w)
    sdpa = av.create("eca_mha", c, heads=heads, attention_impl="sdpa")
    naive = av.create("eca_mha", c, heads=heads, attention_impl="naive")
    assert peak_memory(sdpa, x) < scores_bytes
    assert peak_memory(naive, x) - peak_memory(sdpa, x) >= scores_bytes


def test_training_keeps_the_activations_saved_for_backward():
    b, c, h, w, heads = 2, 32, 16, 16, 4
    scores_bytes = b * heads * (h * w) ** 2 * 4
    x = torch.randn(b, c, h, w)
    naive = av.create("eca_mha", c, heads=heads, attention_impl="naive")
    # the softmax output is saved for backward and its gradient is built beside it
    assert peak_memory(naive, x, backward=True) >= 2 * scores_bytes
    eca = av.create("eca", c)
    # eca's backward holds the input's gradient (as big as the input) at least
    assert peak_memory(eca, x, backward=True) >= x.numel() * 4 > peak_memory(eca, x) - x.numel() * 4
