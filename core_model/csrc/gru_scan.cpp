// A GRU layer's time loop for training, forward and backward, with each step's gate arithmetic in
// one vectorised pass (see core_model/gru_scan.py, which builds this file and wraps it for autograd).
//
// PyTorch's CPU GRU runs a dozen tensor operations per time step, each recorded for autograd and
// replayed one by one in the backward pass, with the weight gradients summed step by step. Here a
// step is one matrix product and one loop over the batch's elements, forward and backward, and the
// weight gradients are one product over all steps. The equations are torch.nn.GRU's:
//   r = sigmoid(gi_r + W_hr h + b_hr),  z = sigmoid(gi_z + W_hz h + b_hz)
//   n = tanh(gi_n + r * (W_hn h + b_hn)),  h' = n + z * (h - n)
// where gi = W_i x + b_i comes in precomputed for all steps (one product, outside).
//
// Variable lengths follow packed sequences: the batch is sorted by length, longest first, and at
// time t only the first sizes[t] rows step; the others keep their state (and output zeros).
//
// C is the type of the products' operands: float, or bfloat16 under autocast. The state, the
// gates and the arithmetic stay in float.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

using at::Tensor;

namespace {

constexpr int64_t kRowsPerTask = 8;

inline float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// One step forward for rows [i0, i1): reads the input gates gi and hidden products gh ([rows, 3H]),
// updates state in place, and keeps what the backward pass needs.
template <typename C>
void step_forward(int64_t i0, int64_t i1, int64_t H, const C* gi, const C* gh, const float* bias,
                  float* state, float* rz, float* n, float* hn, float* h_prev, float* out) {
  for (int64_t i = i0; i < i1; ++i) {
    const C* gi_i = gi + i * 3 * H;
    const C* gh_i = gh + i * 3 * H;
    float* h_i = state + i * H;
    float* rz_i = rz + i * 2 * H;
    float* n_i = n + i * H;
    float* hn_i = hn + i * H;
    float* prev_i = h_prev + i * H;
    float* out_i = out + i * H;
#pragma GCC ivdep  // the rows' arrays do not overlap
    for (int64_t j = 0; j < H; ++j) {
      const float h = h_i[j];
      const float r = sigmoid(static_cast<float>(gi_i[j]) + static_cast<float>(gh_i[j]) + bias[j]);
      const float z = sigmoid(static_cast<float>(gi_i[H + j]) + static_cast<float>(gh_i[H + j]) + bias[H + j]);
      const float hidden_n = static_cast<float>(gh_i[2 * H + j]) + bias[2 * H + j];
      const float candidate = tanhf(static_cast<float>(gi_i[2 * H + j]) + r * hidden_n);
      const float next = candidate + z * (h - candidate);
      prev_i[j] = h;
      rz_i[j] = r;
      rz_i[H + j] = z;
      hn_i[j] = hidden_n;
      n_i[j] = candidate;
      out_i[j] = next;
      h_i[j] = next;
    }
  }
}

// One step backward for rows [i0, i1): the gradient reaching this step's output state is
// dh + d_out + through (the last step's product through W_h, for its first through_rows rows);
// on return dh holds the part that flows to the previous state directly, and the caller adds the
// product through W_h. Writes the gates' gradients: dgi for the input side, dgh for the hidden
// side (they differ in the candidate's, which r scales on the hidden side).
template <typename C>
void step_backward(int64_t i0, int64_t i1, int64_t H, float* dh, const float* d_out, const C* through,
                   int64_t through_rows, const float* rz, const float* n, const float* hn, const float* h_prev,
                   C* dgi, C* dgh) {
  for (int64_t i = i0; i < i1; ++i) {
    float* dh_i = dh + i * H;
    const C* through_i = i < through_rows ? through + i * H : nullptr;
    const float* rz_i = rz + i * 2 * H;
    const float* n_i = n + i * H;
    const float* hn_i = hn + i * H;
    const float* prev_i = h_prev + i * H;
    C* dgi_i = dgi + i * 3 * H;
    C* dgh_i = dgh + i * 3 * H;
    const float* d_out_i = d_out == nullptr ? nullptr : d_out + i * H;
#pragma GCC ivdep
    for (int64_t j = 0; j < H; ++j) {
      const float g = dh_i[j] + (d_out_i == nullptr ? 0.f : d_out_i[j]) +
                      (through_i == nullptr ? 0.f : static_cast<float>(through_i[j]));
      const float r = rz_i[j], z = rz_i[H + j], candidate = n_i[j];
      const float d_candidate = g * (1.f - z) * (1.f - candidate * candidate);
      const float d_r = d_candidate * hn_i[j] * r * (1.f - r);
      const float d_z = g * (prev_i[j] - candidate) * z * (1.f - z);
      dgi_i[j] = static_cast<C>(d_r);
      dgi_i[H + j] = static_cast<C>(d_z);
      dgi_i[2 * H + j] = static_cast<C>(d_candidate);
      dgh_i[j] = static_cast<C>(d_r);
      dgh_i[H + j] = static_cast<C>(d_z);
      dgh_i[2 * H + j] = static_cast<C>(d_candidate * r);
      dh_i[j] = g * z;
    }
  }
}

int64_t rows_at(const std::vector<int64_t>& sizes, int64_t t, int64_t batch) {
  return sizes.empty() ? batch : sizes[t];
}

// A buffer whose rows are all written when every row steps at every time (no sizes); zeros otherwise.
Tensor blank(at::IntArrayRef shape, const at::TensorOptions& options, const std::vector<int64_t>& sizes) {
  return sizes.empty() ? at::empty(shape, options) : at::zeros(shape, options);
}

}  // namespace

// gi [T, B, 3H] (type C), h0 [B, H] float, w_hh [3H, H], b_hh [3H] -> output [T, B, H], final state
// [B, H], and the tensors backward() takes: w_hh as type C, r and z [T, B, 2H], n, hn, h_prev
// [T, B, H], and the products' left operands [T, B, H] (type C).
std::vector<Tensor> forward(const Tensor& gi, const Tensor& h0, const Tensor& w_hh, const Tensor& b_hh,
                            const std::vector<int64_t>& sizes, bool reverse) {
  TORCH_CHECK(gi.dim() == 3 && gi.size(2) % 3 == 0, "gi must be [T, B, 3H]");
  const Tensor inputs = gi.contiguous();
  const int64_t T = inputs.size(0), B = inputs.size(1), H = inputs.size(2) / 3;
  const auto floats = inputs.options().dtype(at::kFloat);
  const auto compute = inputs.options();
  const Tensor w = w_hh.to(inputs.scalar_type());  // [3H, H], kept for backward()
  const Tensor w_t = w.t();
  const Tensor bias = b_hh.to(at::kFloat).contiguous();
  // Rows that do not step output zeros, and add nothing to dW (their left operands are zero).
  Tensor out = blank({T, B, H}, floats, sizes), state = h0.to(at::kFloat).clone().contiguous();
  Tensor rz = at::empty({T, B, 2 * H}, floats), n = at::empty({T, B, H}, floats);
  Tensor hn = at::empty({T, B, H}, floats), h_prev = at::empty({T, B, H}, floats);
  Tensor lefts = blank({T, B, H}, compute, sizes);
  Tensor gh = at::empty({B, 3 * H}, compute);
  for (int64_t k = 0; k < T; ++k) {
    const int64_t t = reverse ? T - 1 - k : k;
    const int64_t rows = rows_at(sizes, t, B);
    Tensor left = lefts[t].narrow(0, 0, rows);
    left.copy_(state.narrow(0, 0, rows));
    Tensor gh_rows = gh.narrow(0, 0, rows);
    at::mm_out(gh_rows, left, w_t);
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, inputs.scalar_type(), "gru_scan_forward", [&] {
      const scalar_t* gi_t = inputs[t].const_data_ptr<scalar_t>();
      const scalar_t* gh_t = gh.const_data_ptr<scalar_t>();
      float *state_p = state.data_ptr<float>(), *rz_t = rz[t].data_ptr<float>(), *n_t = n[t].data_ptr<float>(),
            *hn_t = hn[t].data_ptr<float>(), *prev_t = h_prev[t].data_ptr<float>(), *out_t = out[t].data_ptr<float>();
      const float* bias_p = bias.const_data_ptr<float>();
      at::parallel_for(0, rows, kRowsPerTask, [&](int64_t i0, int64_t i1) {
        step_forward<scalar_t>(i0, i1, H, gi_t, gh_t, bias_p, state_p, rz_t, n_t, hn_t, prev_t, out_t);
      });
    });
  }
  return {out, state, w, rz, n, hn, h_prev, lefts};
}

// The gradients of forward()'s inputs gi [T, B, 3H] (type C), h0, w_hh and b_hh, from those of its
// output (d_out, or undefined) and final state (d_state).
std::vector<Tensor> backward(const Tensor& d_out, const Tensor& d_state, const Tensor& w, const Tensor& rz,
                             const Tensor& n, const Tensor& hn, const Tensor& h_prev, const Tensor& lefts,
                             const std::vector<int64_t>& sizes, bool reverse) {
  const int64_t T = n.size(0), B = n.size(1), H = n.size(2);
  const auto compute = lefts.options();
  Tensor dh = d_state.to(at::kFloat).clone().contiguous();
  const Tensor d_outputs = d_out.defined() ? d_out.to(at::kFloat).contiguous() : Tensor();
  Tensor dgi = blank({T, B, 3 * H}, compute, sizes), dgh = blank({T, B, 3 * H}, compute, sizes);
  // The last step's product through W_h, for its rows: the next step's kernel adds it to their
  // gradient, and what it does not reach is added here.
  Tensor through = at::empty({B, H}, compute);
  int64_t pending = 0;
  for (int64_t k = 0; k < T; ++k) {
    const int64_t t = reverse ? k : T - 1 - k;
    const int64_t rows = rows_at(sizes, t, B);
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, compute.dtype().toScalarType(), "gru_scan_backward", [&] {
      float* dh_p = dh.data_ptr<float>();
      const float* d_out_t = d_outputs.defined() ? d_outputs[t].const_data_ptr<float>() : nullptr;
      const float *rz_t = rz[t].const_data_ptr<float>(), *n_t = n[t].const_data_ptr<float>(),
                  *hn_t = hn[t].const_data_ptr<float>(), *prev_t = h_prev[t].const_data_ptr<float>();
      scalar_t *dgi_t = dgi[t].data_ptr<scalar_t>(), *dgh_t = dgh[t].data_ptr<scalar_t>();
      const scalar_t* through_p = through.const_data_ptr<scalar_t>();
      const int64_t through_rows = std::min(pending, rows);
      at::parallel_for(0, rows, kRowsPerTask, [&](int64_t i0, int64_t i1) {
        step_backward<scalar_t>(i0, i1, H, dh_p, d_out_t, through_p, through_rows, rz_t, n_t, hn_t, prev_t,
                                dgi_t, dgh_t);
      });
    });
    if (pending > rows) {  // rows that stop stepping here (a reversed direction's shorter ones)
      dh.narrow(0, rows, pending - rows).add_(through.narrow(0, rows, pending - rows));
    }
    Tensor through_rows = through.narrow(0, 0, rows);
    at::mm_out(through_rows, dgh[t].narrow(0, 0, rows), w);
    pending = rows;
  }
  dh.narrow(0, 0, pending).add_(through.narrow(0, 0, pending));
  const Tensor flat = dgh.view({T * B, 3 * H});
  Tensor d_w = at::mm(flat.t(), lefts.view({T * B, H})).to(at::kFloat);
  Tensor d_b = flat.sum(0, false, at::kFloat);
  return {dgi, dh, d_w, d_b};
}

// Both directions of a bidirectional layer at once, one per thread: each direction's products are
// too small to split well between two cores, so the two run side by side instead (ATen runs the
// operations inside a parallel region on their calling thread alone).
std::vector<std::vector<Tensor>> forward_both(const Tensor& gi_forward, const Tensor& gi_reverse, const Tensor& h0_forward,
                                              const Tensor& h0_reverse, const Tensor& w_forward, const Tensor& w_reverse,
                                              const Tensor& b_forward, const Tensor& b_reverse,
                                              const std::vector<int64_t>& sizes) {
  std::vector<std::vector<Tensor>> results(2);
  at::parallel_for(0, 2, 1, [&](int64_t d0, int64_t d1) {
    at::NoGradGuard no_grad;  // grad mode is per thread: off on the caller's, on here
    for (int64_t d = d0; d < d1; ++d) {
      results[d] = d == 0 ? forward(gi_forward, h0_forward, w_forward, b_forward, sizes, false)
                          : forward(gi_reverse, h0_reverse, w_reverse, b_reverse, sizes, true);
    }
  });
  return results;
}

std::vector<std::vector<Tensor>> backward_both(const std::vector<Tensor>& forward_args, const std::vector<Tensor>& reverse_args,
                                               const std::vector<int64_t>& sizes) {
  std::vector<std::vector<Tensor>> results(2);
  at::parallel_for(0, 2, 1, [&](int64_t d0, int64_t d1) {
    at::NoGradGuard no_grad;
    for (int64_t d = d0; d < d1; ++d) {
      const std::vector<Tensor>& a = d == 0 ? forward_args : reverse_args;
      results[d] = backward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], sizes, d == 1);
    }
  });
  return results;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_both", &forward_both, "Both directions of a bidirectional GRU layer's time loop, forward");
  m.def("backward_both", &backward_both, "Both directions of a bidirectional GRU layer's time loop, backward");
  m.def("forward", &forward, "A GRU layer's time loop, forward");
  m.def("backward", &backward, "A GRU layer's time loop, backward");
}
