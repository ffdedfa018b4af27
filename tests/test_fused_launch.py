"""The Triton launch path, checked on a CPU: nothing between the call and its kernels but the
op's dispatch (no autotuner, nothing that waits for the device or copies from the host, so CUDA
graphs can capture it), and torch.compile sees the kernels themselves."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import attention_variants as av
from attention_variants.fused import ops, triton_kernels

# ops that make the host wait for the device, or create device tensors from host data: a CUDA
# graph cannot capture them, and eagerly they stall the launch queue
SYNCING = ("_local_scalar_dense", "nonzero", "is_nonzero", "equal", "masked_select", "_unique",
           "repeat_interleave", "lift_fresh", "_to_copy", "item")  # fmt: skip


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


def test_the_kernels_are_launched_without_an_autotuner_with_a_config_cached_per_shape():
    from triton.runtime.autotuner import Autotuner

    kernels = [v for k, v in vars(triton_kernels).items() if k.endswith("_kernel")]
    assert len(kernels) == 5 and not [k for k in kernels if isinstance(k, Autotuner)]
    triton_kernels.reduce_config.cache_clear()
    x = torch.randn(2, 24, 5, 5)
    triton_kernels.pool(x)
    triton_kernels.pool(torch.randn(2, 24, 5, 5))
    info = triton_kernels.reduce_config.cache_info()
    assert (info.misses, info.hits) == (1, 1)


@pytest.mark.parametrize("name", ["eca_fused", "se_fused"])
def test_a_fused_call_and_its_backward_do_nothing_a_cuda_graph_cannot_capture(name):
    module = av.create(name, 32)
    x = torch.randn(2, 32, 6, 5, requires_grad=True)
    y = module.triton_gate(x)[0]
    upstream = torch.randn_like(y)
    recorders = [_Recorder() for _ in range(2)]
    with recorders[0]:  # the op's own code and its autograd formula
        module.triton_gate(x)[0].backward(upstream)
    kernels = triton_kernels
    with recorders[1]:  # inside the ops: the launchers
        if name == "eca_fused":
            kernels.eca_forward(x.detach(), module.conv.weight.detach().reshape(-1))
        else:
            mlp = module.mlp
            kernels.se_forward(x.detach(), mlp.fc1.weight.detach(), mlp.fc1.bias.detach(),
                               mlp.fc2.weight.detach(), mlp.fc2.bias.detach())  # fmt: skip
        gate = torch.rand(2, 32)
        kernels.channel_dot(upstream, x.detach())
        kernels.gate_input_grad(upstream, gate, torch.randn(2, 32))
    seen = set(recorders[0].ops) | set(recorders[1].ops)
    assert seen and not seen & set(SYNCING), seen & set(SYNCING)
    allocations = {op for op in recorders[1].ops if op.startswith(("empty", "new_"))}
    assert allocations <= {"empty", "empty_like", "new_empty"}


def _python(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh process with compiled (not interpreted) Triton kernels."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_on_gpus_the_ops_are_triton_ops_whose_eager_calls_skip_the_traceable_wrapper():
    done = _python("""
        import torch
        from torch._library.triton import is_wrap_triton_enabled, triton_ops_to_kernels
        from attention_variants.fused import ops
        assert ops.TRACEABLE_KERNELS
        names = {"attention_variants::" + n for n in ("eca_gate", "se_gate", "channel_dot",
                                                     "gate_input_grad")}
        assert names <= set(triton_ops_to_kernels), triton_ops_to_kernels.keys()
        seen = []
        class Kernels:  # stands in for the Triton launchers on a machine without a GPU
            def eca_forward(self, x, w):
                seen.append(is_wrap_triton_enabled())
                return [torch.empty_like(x), x.new_empty(x.shape[:2]), x.new_empty(x.shape[:2])]
        ops.backend = lambda device: Kernels()
        ops.eca_gate(torch.randn(2, 8, 3, 3), torch.randn(1, 1, 3))
        assert seen == [False], seen  # eager: wrap_triton hands back the kernel itself
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_torch_compile_traces_into_the_triton_kernels():
    """AOTAutograd's trace (what inductor compiles) of both blocks on fake CUDA tensors holds
    the kernels themselves, not an opaque op."""
    done = _python("""
        import logging, torch
        logging.disable(logging.WARNING)  # no GPU: Triton cannot tell which inputs are mutated
        from functorch.compile import aot_function
        from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table
        from torch._subclasses.fake_tensor import FakeTensorMode
        from attention_variants.fused import ops
        graphs = []
        def keep(gm, inputs):
            graphs.append(gm)
            return gm
        def blocks(x, w, w1, b1, w2, b2):
            return ops.eca_gate(x, w)[0] + ops.se_gate(x, w1, b1, w2, b2)[0]
        with FakeTensorMode():
            shapes = [(2, 64, 8, 8), (1, 1, 3), (4, 64), (4,), (64, 4), (64,)]
            args = [torch.empty(s, device="cuda") for s in shapes]
            try:
                aot_function(blocks, fw_compiler=keep)(*args)
            except RuntimeError:  # running the graph needs a GPU; tracing it does not
                pass
        (graph,) = graphs
        kernels = [kernel_side_table.get_kernel(node.kwargs["kernel_idx"]).fn.__name__
                   for node in graph.graph.nodes if "triton_kernel_wrapper" in str(node.target)]
        print(" ".join(kernels))
        assert "attention_variants" not in graph.code  # decomposed: no opaque op left
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [
        "_eca_fused_kernel", "_pool_kernel", "_linear_kernel", "_linear_kernel", "_scale_kernel"
    ]  # fmt: skip


def test_on_cpu_tensors_without_the_interpreter_the_ops_say_where_they_run(monkeypatch):
    monkeypatch.setattr(ops, "INTERPRETED", False)
    with pytest.raises(RuntimeError, match="run on cuda tensors"):
        ops.backend(torch.device("cpu"))


@pytest.mark.parametrize("name", ["eca_fused", "se_fused"])
def test_torch_compile_fullgraph_traces_the_interpreted_ops_and_their_backward(name):
    """Under the interpreter the ops are opaque custom ops: compiled whole, equal to eager."""
    module = av.create(name, 16)
    compiled = torch.compile(
        lambda x: module.triton_gate(x)[0], backend="aot_eager", fullgraph=True
    )
    x = torch.randn(2, 16, 6, 5, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    compiled(x).sum().backward()
    module.triton_gate(x_eager)[0].sum().backward()
    torch.testing.assert_close(x.grad, x_eager.grad)
    torch.testing.assert_close(x.grad, _eager_grad(name, module, x.detach()))


def _eager_grad(name, fused, x):
    eager = av.create(name.removesuffix("_fused"), x.shape[1])
    eager.load_state_dict(fused.state_dict())
    x = x.clone().requires_grad_()
    eager(x).sum().backward()
    return x.grad
