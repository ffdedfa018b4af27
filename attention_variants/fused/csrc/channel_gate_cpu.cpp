// Fused channel-gate blocks (ECA, SE) for the CPU: pool -> gate -> scale with x hot in cache.
//
// Layouts: x is (B, C, H, W), either contiguous (a channel's H*W values are adjacent) or
// channels_last (a pixel's C values are adjacent); H and W fold into one index of stride s_hw.
// All arithmetic accumulates in float, whatever the storage dtype.
// Registered as torch ops (torch.ops.attention_variants_cpu.*) with ATen and autograd headers
// only: no pybind11 and no torch/extension.h, which keeps the first-use build short.
// `eca_gate` and `se_gate` are whole blocks: the CPU kernel and its autograd are registered
// here, so a call goes from the dispatcher to the kernel with no Python in between.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

struct Layout {
  int64_t B, C, HW, s_b, s_c, s_hw;
  bool channels_last() const { return s_c == 1 && C > 1; }
};

Layout layout_of(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "expected a (B, C, H, W) tensor, got ", x.dim(), " dims");
  const bool cl = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  TORCH_CHECK(x.is_contiguous() || cl, "x must be contiguous or channels_last");
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  if (cl) return {B, C, HW, HW * C, 1, C};
  return {B, C, HW, C * HW, HW, 1};
}

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// Mean over H*W of channels [c0, c1) of sample b, into pooled[c].
template <typename T>
void pool_range(const T* x, const Layout& L, int64_t b, int64_t c0, int64_t c1, float* pooled) {
  const T* xb = x + b * L.s_b;
  const float inv = 1.0f / static_cast<float>(L.HW);
  if (!L.channels_last()) {
    for (int64_t c = c0; c < c1; ++c) {
      const T* row = xb + c * L.s_c;
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < L.HW; ++i) sum += static_cast<float>(row[i]);
      pooled[c] = sum * inv;
    }
    return;
  }
  std::fill(pooled + c0, pooled + c1, 0.f);
  for (int64_t i = 0; i < L.HW; ++i) {
    const T* pixel = xb + i * L.s_hw;
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) pooled[c] += static_cast<float>(pixel[c]);
  }
  for (int64_t c = c0; c < c1; ++c) pooled[c] *= inv;
}

// y[b, c] = x[b, c] * gate[c] + shift[c] for channels [c0, c1).
template <typename T>
void scale_range(const T* x, T* y, const Layout& L, int64_t b, int64_t c0, int64_t c1,
                 const float* gate, const float* shift) {
  const T* xb = x + b * L.s_b;
  T* yb = y + b * L.s_b;
  if (!L.channels_last()) {
    for (int64_t c = c0; c < c1; ++c) {
      const T* in = xb + c * L.s_c;
      T* out = yb + c * L.s_c;
      const float g = gate[c], s = shift ? shift[c] : 0.f;
#pragma omp simd
      for (int64_t i = 0; i < L.HW; ++i) out[i] = static_cast<T>(static_cast<float>(in[i]) * g + s);
    }
    return;
  }
  for (int64_t i = 0; i < L.HW; ++i) {
    const T* in = xb + i * L.s_hw;
    T* out = yb + i * L.s_hw;
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c)
      out[c] = static_cast<T>(static_cast<float>(in[c]) * gate[c] + (shift ? shift[c] : 0.f));
  }
}

// ECA gate of channel c: sigmoid of the zero-padded 1-D convolution of the pooled values.
inline float eca_gate(const float* pooled, int64_t C, int64_t c, const float* w, int64_t k) {
  const int64_t half = k / 2;
  float z = 0.f;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t src = c + j - half;
    if (src >= 0 && src < C) z += w[j] * pooled[src];
  }
  return sigmoid(z);
}

// Splits B samples x C channels into at least as many work items as threads.
int64_t channel_chunk(const Layout& L) {
  const int64_t threads = at::get_num_threads();
  const int64_t per_sample = std::max<int64_t>(1, (threads + L.B - 1) / L.B);
  return std::max<int64_t>(1, (L.C + per_sample - 1) / per_sample);
}

template <typename T>
void eca_forward_impl(const T* x, T* y, const Layout& L, const float* w, int64_t k,
                      float* pooled, float* gate) {
  const int64_t half = k / 2, chunk = channel_chunk(L);
  const int64_t chunks = (L.C + chunk - 1) / chunk;
  // channels_last: a pixel's channels are adjacent, so the whole chunk (a sample, when there
  // are enough samples for every thread) is pooled in one streaming pass, gated, then scaled
  const int64_t block = L.channels_last() ? chunk : 1;
  at::parallel_for(0, L.B * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> window(L.C);  // this item's pooled values, halo included: no shared writes
    float* pw = window.data();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, c0 = (item % chunks) * chunk;
      const int64_t c1 = std::min(L.C, c0 + chunk);
      float* gb = gate + b * L.C;
      for (int64_t s0 = c0; s0 < c1; s0 += block) {
        const int64_t s1 = std::min(c1, s0 + block);
        if (block > 1) {
          pool_range(x, L, b, std::max<int64_t>(0, s0 - half), std::min(L.C, s1 + half), pw);
          for (int64_t c = s0; c < s1; ++c) gb[c] = eca_gate(pw, L.C, c, w, k);
          scale_range(x, y, L, b, s0, s1, gb, nullptr);
          continue;
        }
        // contiguous: a sliding window; channel c is scaled once channel c + half is pooled,
        // `half` channels after c was read, so its second read hits L1/L2
        if (s0 == c0) pool_range(x, L, b, std::max<int64_t>(0, c0 - half), std::min(L.C, c0 + half), pw);
        if (s0 + half < L.C) pool_range(x, L, b, s0 + half, s0 + half + 1, pw);
        gb[s0] = eca_gate(pw, L.C, s0, w, k);
        scale_range(x, y, L, b, s0, s0 + 1, gb, nullptr);
      }
      std::copy(pw + c0, pw + c1, pooled + b * L.C + c0);
    }
  });
}

// The MLP of one sample: gate[c] = sigmoid(W2 relu(W1 pooled + b1) + b2).
void se_mlp(const float* pb, int64_t C, const float* w1, const float* b1, const float* w2,
            const float* b2, int64_t hidden, float* h, float* gb) {
  for (int64_t j = 0; j < hidden; ++j) {
    float acc = b1 ? b1[j] : 0.f;
    const float* row = w1 + j * C;
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < C; ++c) acc += row[c] * pb[c];
    h[j] = std::max(acc, 0.f);
  }
  for (int64_t c = 0; c < C; ++c) {
    float acc = b2 ? b2[c] : 0.f;
    const float* row = w2 + c * hidden;
    for (int64_t j = 0; j < hidden; ++j) acc += row[j] * h[j];
    gb[c] = sigmoid(acc);
  }
}

template <typename T>
void se_forward_impl(const T* x, T* y, const Layout& L, const float* w1, const float* b1,
                     const float* w2, const float* b2, int64_t hidden, float* pooled,
                     float* gate) {
  if (L.B >= at::get_num_threads()) {
    // the MLP mixes every channel, so a sample is pooled whole, gated, then scaled while it
    // is still in cache
    at::parallel_for(0, L.B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> h(hidden);
      for (int64_t b = begin; b < end; ++b) {
        float* pb = pooled + b * L.C;
        pool_range(x, L, b, 0, L.C, pb);
        se_mlp(pb, L.C, w1, b1, w2, b2, hidden, h.data(), gate + b * L.C);
        scale_range(x, y, L, b, 0, L.C, gate + b * L.C, nullptr);
      }
    });
    return;
  }
  // fewer samples than threads: every thread pools and scales a share of each sample's
  // channels, and the tiny MLPs run in between
  const int64_t chunk = channel_chunk(L), chunks = (L.C + chunk - 1) / chunk;
  at::parallel_for(0, L.B * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, c0 = (item % chunks) * chunk;
      pool_range(x, L, b, c0, std::min(L.C, c0 + chunk), pooled + b * L.C);
    }
  });
  std::vector<float> h(hidden);
  for (int64_t b = 0; b < L.B; ++b)
    se_mlp(pooled + b * L.C, L.C, w1, b1, w2, b2, hidden, h.data(), gate + b * L.C);
  at::parallel_for(0, L.B * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, c0 = (item % chunks) * chunk;
      scale_range(x, y, L, b, c0, std::min(L.C, c0 + chunk), gate + b * L.C, nullptr);
    }
  });
}

template <typename T>
void channel_dot_impl(const T* dy, const T* x, const Layout& L, float* out) {
  const int64_t chunk = channel_chunk(L), chunks = (L.C + chunk - 1) / chunk;
  at::parallel_for(0, L.B * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, c0 = (item % chunks) * chunk;
      const int64_t c1 = std::min(L.C, c0 + chunk);
      float* ob = out + b * L.C;
      if (!L.channels_last()) {
        for (int64_t c = c0; c < c1; ++c) {
          const T* g = dy + b * L.s_b + c * L.s_c;
          const T* v = x + b * L.s_b + c * L.s_c;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int64_t i = 0; i < L.HW; ++i) acc += static_cast<float>(g[i]) * static_cast<float>(v[i]);
          ob[c] = acc;
        }
        continue;
      }
      std::fill(ob + c0, ob + c1, 0.f);
      for (int64_t i = 0; i < L.HW; ++i) {
        const T* g = dy + b * L.s_b + i * L.s_hw;
        const T* v = x + b * L.s_b + i * L.s_hw;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) ob[c] += static_cast<float>(g[c]) * static_cast<float>(v[c]);
      }
    }
  });
}

template <typename T>
void gate_input_grad_impl(const T* dy, T* dx, const Layout& L, const float* gate, const float* shift) {
  const int64_t chunk = channel_chunk(L), chunks = (L.C + chunk - 1) / chunk;
  at::parallel_for(0, L.B * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, c0 = (item % chunks) * chunk;
      scale_range(dy, dx, L, b, c0, std::min(L.C, c0 + chunk), gate + b * L.C, shift + b * L.C);
    }
  });
}

at::Tensor float_contiguous(const at::Tensor& t) {
  return t.detach().to(at::kFloat).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_forward(const at::Tensor& x, const at::Tensor& weight) {
  const Layout L = layout_of(x);
  auto w = float_contiguous(weight).view({-1});
  TORCH_CHECK(w.numel() % 2 == 1, "ECA kernel size must be odd, got ", w.numel());
  auto y = at::empty_like(x);
  auto opts = x.options().dtype(at::kFloat);
  auto pooled = at::empty({L.B, L.C}, opts);
  auto gate = at::empty({L.B, L.C}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "eca_forward", [&] {
    eca_forward_impl<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), L,
                               w.const_data_ptr<float>(), w.numel(), pooled.mutable_data_ptr<float>(),
                               gate.mutable_data_ptr<float>());
  });
  return {y, pooled, gate};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> se_forward(const at::Tensor& x, const at::Tensor& w1,
                                                          const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                                                          const std::optional<at::Tensor>& b2) {
  const Layout L = layout_of(x);
  auto W1 = float_contiguous(w1), W2 = float_contiguous(w2);
  const int64_t hidden = W1.size(0);
  TORCH_CHECK(W1.size(1) == L.C && W2.size(0) == L.C && W2.size(1) == hidden,
              "SE weights do not match ", L.C, " channels");
  at::Tensor B1 = b1 ? float_contiguous(*b1) : at::Tensor();
  at::Tensor B2 = b2 ? float_contiguous(*b2) : at::Tensor();
  auto y = at::empty_like(x);
  auto opts = x.options().dtype(at::kFloat);
  auto pooled = at::empty({L.B, L.C}, opts);
  auto gate = at::empty({L.B, L.C}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "se_forward", [&] {
    se_forward_impl<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), L,
                              W1.const_data_ptr<float>(), B1.defined() ? B1.const_data_ptr<float>() : nullptr,
                              W2.const_data_ptr<float>(), B2.defined() ? B2.const_data_ptr<float>() : nullptr,
                              hidden, pooled.mutable_data_ptr<float>(), gate.mutable_data_ptr<float>());
  });
  return {y, pooled, gate};
}

// sum over H*W of dy * x, per (b, c), in float: the gradient reaching the gate.
at::Tensor channel_dot(const at::Tensor& dy, const at::Tensor& x) {
  const Layout L = layout_of(x);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.strides() == x.strides(), "dy must match x's layout");
  auto out = at::empty({L.B, L.C}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_dot", [&] {
    channel_dot_impl<scalar_t>(dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), L,
                               out.mutable_data_ptr<float>());
  });
  return out;
}

// dx = dy * gate + dpooled / (H*W): the input gradient of x * gate(mean(x)).
at::Tensor gate_input_grad(const at::Tensor& dy, const at::Tensor& gate, const at::Tensor& dpooled) {
  const Layout L = layout_of(dy);
  auto g = float_contiguous(gate), dp = float_contiguous(dpooled);
  auto shift = dp / static_cast<double>(L.HW);
  auto dx = at::empty_like(dy);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dy.scalar_type(), "gate_input_grad", [&] {
    gate_input_grad_impl<scalar_t>(dy.const_data_ptr<scalar_t>(), dx.mutable_data_ptr<scalar_t>(), L,
                                   g.const_data_ptr<float>(), shift.const_data_ptr<float>());
  });
  return dx;
}

// ECA backward in one call: the gate's gradient, the 1-D convolution's transpose and weight
// gradient on the (B, C) vectors, then dx. `dgate_extra` / `dpooled_extra` are gradients that
// reached the op's gate and pooled outputs directly (usually none).
std::tuple<at::Tensor, at::Tensor> eca_backward(const at::Tensor& dy, const at::Tensor& x,
                                                const at::Tensor& weight, const at::Tensor& pooled,
                                                const at::Tensor& gate,
                                                const std::optional<at::Tensor>& dgate_extra,
                                                const std::optional<at::Tensor>& dpooled_extra) {
  auto dgate = channel_dot(dy, x);
  if (dgate_extra) dgate.add_(*dgate_extra);
  const auto g = float_contiguous(gate), p = float_contiguous(pooled);
  const auto dz = (dgate * g * (1 - g)).contiguous();
  const auto w = float_contiguous(weight).view({-1});
  const int64_t B = dz.size(0), C = dz.size(1), k = w.numel(), half = k / 2;
  auto dpooled = at::zeros({B, C}, dz.options());
  auto dweight = at::zeros({k}, dz.options());
  const float *dzp = dz.const_data_ptr<float>(), *pp = p.const_data_ptr<float>(),
              *wp = w.const_data_ptr<float>();
  float *dpp = dpooled.mutable_data_ptr<float>(), *dwp = dweight.mutable_data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {  // (B, C) x k: tiny next to the passes over dy and x
    for (int64_t c = 0; c < C; ++c) {
      const float d = dzp[b * C + c];
      for (int64_t j = 0; j < k; ++j) {
        const int64_t src = c + j - half;  // z[c] = sum_j w[j] * pooled[c + j - half]
        if (src < 0 || src >= C) continue;
        dpp[b * C + src] += wp[j] * d;
        dwp[j] += pp[b * C + src] * d;
      }
    }
  }
  if (dpooled_extra) dpooled.add_(*dpooled_extra);
  return {gate_input_grad(dy, g, dpooled), dweight.view(weight.sizes()).to(weight.scalar_type())};
}

// SE backward in one call: the gate's gradient, the MLP's backward on (B, C), then dx.
std::tuple<at::Tensor, at::Tensor, std::optional<at::Tensor>, at::Tensor, std::optional<at::Tensor>>
se_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w1,
            const std::optional<at::Tensor>& b1, const at::Tensor& w2,
            const std::optional<at::Tensor>& b2, const at::Tensor& pooled, const at::Tensor& gate,
            const std::optional<at::Tensor>& dgate_extra,
            const std::optional<at::Tensor>& dpooled_extra) {
  auto dgate = channel_dot(dy, x);
  if (dgate_extra) dgate.add_(*dgate_extra);
  const auto g = float_contiguous(gate), p = float_contiguous(pooled);
  const auto W1 = float_contiguous(w1), W2 = float_contiguous(w2);
  const auto dz = dgate * g * (1 - g);
  auto pre = at::mm(p, W1.t());
  if (b1) pre.add_(float_contiguous(*b1));
  const auto hidden = pre.clamp_min(0);
  const auto dw2 = at::mm(dz.t(), hidden);
  const auto dhidden = at::mm(dz, W2).mul_(pre.gt(0));
  const auto dw1 = at::mm(dhidden.t(), p);
  auto dpooled = at::mm(dhidden, W1);
  if (dpooled_extra) dpooled.add_(*dpooled_extra);
  std::optional<at::Tensor> db1, db2;
  if (b1) db1 = dhidden.sum(0).to(b1->scalar_type());
  if (b2) db2 = dz.sum(0).to(b2->scalar_type());
  return {gate_input_grad(dy, g, dpooled), dw1.to(w1.scalar_type()), db1,
          dw2.to(w2.scalar_type()), db2};
}

// ---- the whole blocks: layout, kernel and autograd ------------------------------------------

namespace {

// x as the kernels take it: contiguous or channels_last (anything else is made contiguous).
at::Tensor standard_layout(const at::Tensor& x) {
  if (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

// t in x's memory layout: the kernels index both tensors with x's strides.
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x) {
  const bool cl = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  return t.contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

std::optional<at::Tensor> maybe(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

using Gates = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Gates eca_gate_cpu(const at::Tensor& x, const at::Tensor& weight) {
  return eca_forward(standard_layout(x), weight);
}

Gates se_gate_cpu(const at::Tensor& x, const at::Tensor& w1, const std::optional<at::Tensor>& b1,
                  const at::Tensor& w2, const std::optional<at::Tensor>& b2) {
  return se_forward(standard_layout(x), w1, b1, w2, b2);
}

// The ops are called through the dispatcher, below autograd: the counter and the tracer see
// them by name (attention_variants_cpu.eca_gate, .eca_backward, ...).
template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class EcaGate : public torch::autograd::Function<EcaGate> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight) {
    at::AutoDispatchBelowADInplaceOrView below;
    static auto gate_op = op<Gates(const at::Tensor&, const at::Tensor&)>("attention_variants_cpu::eca_gate");
    const auto xs = standard_layout(x);
    auto [y, pooled, gate] = gate_op.call(xs, weight);
    ctx->save_for_backward({xs, weight, pooled, gate});
    return {y, pooled, gate};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto backward_op =
        op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&, const at::Tensor&,
                                              const std::optional<at::Tensor>&,
                                              const std::optional<at::Tensor>&)>(
            "attention_variants_cpu::eca_backward");
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto dy = grads[0].defined() ? like_x(grads[0], x) : at::zeros_like(x);
    auto [dx, dweight] = backward_op.call(dy, x, saved[1], saved[2], saved[3], maybe(grads[2]),
                                          maybe(grads[1]));
    return {dx, dweight};
  }
};

class SeGate : public torch::autograd::Function<SeGate> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w1,
                               const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                               const std::optional<at::Tensor>& b2) {
    at::AutoDispatchBelowADInplaceOrView below;
    static auto gate_op = op<Gates(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                   const at::Tensor&, const std::optional<at::Tensor>&)>(
        "attention_variants_cpu::se_gate");
    const auto xs = standard_layout(x);
    auto [y, pooled, gate] = gate_op.call(xs, w1, b1, w2, b2);
    ctx->save_for_backward({xs, w1, b1.value_or(at::Tensor()), w2, b2.value_or(at::Tensor()), pooled, gate});
    return {y, pooled, gate};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    using Grads = std::tuple<at::Tensor, at::Tensor, std::optional<at::Tensor>, at::Tensor,
                             std::optional<at::Tensor>>;
    static auto backward_op =
        op<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                 const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                 const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>(
            "attention_variants_cpu::se_backward");
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto dy = grads[0].defined() ? like_x(grads[0], x) : at::zeros_like(x);
    auto [dx, dw1, db1, dw2, db2] =
        backward_op.call(dy, x, saved[1], maybe(saved[2]), saved[3], maybe(saved[4]), saved[5],
                         saved[6], maybe(grads[2]), maybe(grads[1]));
    return {dx, dw1, db1.value_or(at::Tensor()), dw2, db2.value_or(at::Tensor())};
  }
};

Gates as_gates(const variable_list& out) { return {out[0], out[1], out[2]}; }

Gates eca_gate_autograd(const at::Tensor& x, const at::Tensor& weight) {
  return as_gates(EcaGate::apply(x, weight));
}

Gates se_gate_autograd(const at::Tensor& x, const at::Tensor& w1, const std::optional<at::Tensor>& b1,
                       const at::Tensor& w2, const std::optional<at::Tensor>& b2) {
  return as_gates(SeGate::apply(x, w1, b1, w2, b2));
}

}  // namespace

TORCH_LIBRARY(attention_variants_cpu, m) {
  m.def("eca_gate(Tensor x, Tensor weight) -> (Tensor, Tensor, Tensor)");
  m.def("se_gate(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2) -> (Tensor, Tensor, Tensor)");
  m.def("eca_forward(Tensor x, Tensor weight) -> (Tensor, Tensor, Tensor)");
  m.def("se_forward(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2) -> (Tensor, Tensor, Tensor)");
  m.def("channel_dot(Tensor dy, Tensor x) -> Tensor");
  m.def("gate_input_grad(Tensor dy, Tensor gate, Tensor dpooled) -> Tensor");
  m.def("eca_backward(Tensor dy, Tensor x, Tensor weight, Tensor pooled, Tensor gate, "
        "Tensor? dgate_extra, Tensor? dpooled_extra) -> (Tensor, Tensor)");
  m.def("se_backward(Tensor dy, Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, "
        "Tensor pooled, Tensor gate, Tensor? dgate_extra, Tensor? dpooled_extra) "
        "-> (Tensor, Tensor, Tensor?, Tensor, Tensor?)");
}

// CPU kernels: shapes for tracing come from fake implementations registered in Python
TORCH_LIBRARY_IMPL(attention_variants_cpu, CPU, m) {
  m.impl("eca_gate", &eca_gate_cpu);
  m.impl("se_gate", &se_gate_cpu);
  m.impl("eca_forward", &eca_forward);
  m.impl("se_forward", &se_forward);
  m.impl("channel_dot", &channel_dot);
  m.impl("gate_input_grad", &gate_input_grad);
  m.impl("eca_backward", &eca_backward);
  m.impl("se_backward", &se_backward);
}

// the blocks' autograd, in C++: the training step has no Python between the ops either
TORCH_LIBRARY_IMPL(attention_variants_cpu, Autograd, m) {
  m.impl("eca_gate", &eca_gate_autograd);
  m.impl("se_gate", &se_gate_autograd);
}
