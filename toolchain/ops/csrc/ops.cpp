// mlffc fused operators: schemas (TORCH_LIBRARY) and CPU kernels.
//
// Each fused forward op has its backward as a separate op, so a captured energy+forces graph holds
// both as explicit nodes and an AOTInductor package that calls them runs from C++ once this
// library is loaded (dlopen / torch.ops.load_library). Fake (meta) kernels and the autograd
// formulas that connect forward and backward live in mlffc/ops/__init__.py (compile side only).
// The backward ops are not differentiable themselves: forces are the first derivative, and the
// compiled graph never needs the second.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace mlffc {
namespace {

void check_rows(const at::Tensor& t, const char* name, int64_t rows) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.size(0) == rows, name, " has ", t.size(0), " rows, expected ", rows);
}

at::Tensor row_major(const at::Tensor& t) {
  // Kernels index rows with t.stride(0) and need unit stride along the row.
  return t.stride(1) == 1 ? t : t.contiguous();
}

// ---------------------------------------------------------------------------------------------
// scatter_outer: out[index[e], c*K + k] += a[e, c] * b[e, k]  (out [N, C*K])
// The per-edge outer product of message passing summed into atoms, without materialising the
// [E, C*K] edge tensor. Parallel over channel blocks (each thread owns whole output columns, so
// no atomics and any edge order is valid).
// ---------------------------------------------------------------------------------------------
template <typename scalar_t, int K>
void scatter_outer_rows(const scalar_t* a, int64_t sa, const scalar_t* b, int64_t sb, const int64_t* index,
                        int64_t edges, int64_t c0, int64_t c1, int64_t kk, at::opmath_type<scalar_t>* out, int64_t width) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kMax = K > 0 ? K : 1;
  const int64_t k_count = K > 0 ? K : kk;
  for (int64_t e = 0; e < edges; ++e) {
    acc_t* row = out + index[e] * width;
    const scalar_t* ae = a + e * sa;
    const scalar_t* be = b + e * sb;
    if (K > 0) {
      acc_t bv[kMax];
      for (int k = 0; k < K; ++k) bv[k] = static_cast<acc_t>(be[k]);
      for (int64_t c = c0; c < c1; ++c) {
        const acc_t av = static_cast<acc_t>(ae[c]);
        acc_t* o = row + c * K;
        for (int k = 0; k < K; ++k) o[k] += av * bv[k];
      }
    } else {
      for (int64_t c = c0; c < c1; ++c) {
        const acc_t av = static_cast<acc_t>(ae[c]);
        acc_t* o = row + c * k_count;
        for (int64_t k = 0; k < k_count; ++k) o[k] += av * static_cast<acc_t>(be[k]);
      }
    }
  }
}

void check_scatter_inputs(const at::Tensor& a, const at::Tensor& b, const at::Tensor& index) {
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong, "index must be a 1-D int64 tensor");
  check_rows(a, "a", index.size(0));
  check_rows(b, "b", index.size(0));
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "a and b must have one dtype");
  TORCH_CHECK(a.device() == b.device() && a.device() == index.device(), "a, b and index must be on one device");
}

at::Tensor scatter_outer_cpu(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& index_in, int64_t num_nodes) {
  check_scatter_inputs(a_in, b_in, index_in);
  const at::Tensor a = row_major(a_in), b = row_major(b_in), index = index_in.contiguous();
  const int64_t edges = a.size(0), channels = a.size(1), kk = b.size(1), width = channels * kk;
  const auto acc_type = at::toOpMathType(a.scalar_type());
  at::Tensor out = at::zeros({num_nodes, width}, a.options().dtype(acc_type));
  if (edges == 0 || width == 0) return out.to(a.scalar_type());
  const int64_t* idx = index.data_ptr<int64_t>();
  for (int64_t e = 0; e < edges; ++e) TORCH_CHECK(idx[e] >= 0 && idx[e] < num_nodes, "index ", idx[e], " out of range [0, ", num_nodes, ")");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "scatter_outer", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    acc_t* o = out.data_ptr<acc_t>();
    const scalar_t* pa = a.const_data_ptr<scalar_t>();
    const scalar_t* pb = b.const_data_ptr<scalar_t>();
    at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
      switch (kk) {
        case 1: scatter_outer_rows<scalar_t, 1>(pa, a.stride(0), pb, b.stride(0), idx, edges, c0, c1, kk, o, width); break;
        case 3: scatter_outer_rows<scalar_t, 3>(pa, a.stride(0), pb, b.stride(0), idx, edges, c0, c1, kk, o, width); break;
        case 4: scatter_outer_rows<scalar_t, 4>(pa, a.stride(0), pb, b.stride(0), idx, edges, c0, c1, kk, o, width); break;
        case 6: scatter_outer_rows<scalar_t, 6>(pa, a.stride(0), pb, b.stride(0), idx, edges, c0, c1, kk, o, width); break;
        default: scatter_outer_rows<scalar_t, 0>(pa, a.stride(0), pb, b.stride(0), idx, edges, c0, c1, kk, o, width);
      }
    });
  });
  return out.scalar_type() == a.scalar_type() ? out : out.to(a.scalar_type());
}

// grad_a[e, c] = sum_k grad[index[e], c*K + k] b[e, k];  grad_b[e, k] = sum_c grad[index[e], c*K + k] a[e, c]
template <typename scalar_t, int K>
void scatter_outer_backward_rows(const scalar_t* grad, const scalar_t* a, int64_t sa, const scalar_t* b, int64_t sb,
                                 const int64_t* index, int64_t e0, int64_t e1, int64_t channels, int64_t kk,
                                 scalar_t* grad_a, scalar_t* grad_b) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kMax = K > 0 ? K : 1;
  const int64_t k_count = K > 0 ? K : kk;
  const int64_t width = channels * k_count;
  for (int64_t e = e0; e < e1; ++e) {
    const scalar_t* g = grad + index[e] * width;
    const scalar_t* ae = a + e * sa;
    const scalar_t* be = b + e * sb;
    if (K > 0) {
      acc_t bv[kMax], gb[kMax];
      for (int k = 0; k < K; ++k) { bv[k] = static_cast<acc_t>(be[k]); gb[k] = 0; }
      for (int64_t c = 0; c < channels; ++c) {
        const acc_t av = static_cast<acc_t>(ae[c]);
        const scalar_t* gc = g + c * K;
        acc_t ga = 0;
        for (int k = 0; k < K; ++k) {
          const acc_t gv = static_cast<acc_t>(gc[k]);
          ga += gv * bv[k];
          gb[k] += gv * av;
        }
        grad_a[e * channels + c] = static_cast<scalar_t>(ga);
      }
      for (int k = 0; k < K; ++k) grad_b[e * K + k] = static_cast<scalar_t>(gb[k]);
    } else {
      for (int64_t k = 0; k < k_count; ++k) grad_b[e * k_count + k] = 0;
      for (int64_t c = 0; c < channels; ++c) {
        const acc_t av = static_cast<acc_t>(ae[c]);
        acc_t ga = 0;
        for (int64_t k = 0; k < k_count; ++k) {
          const acc_t gv = static_cast<acc_t>(g[c * k_count + k]);
          ga += gv * static_cast<acc_t>(be[k]);
          grad_b[e * k_count + k] = static_cast<scalar_t>(static_cast<acc_t>(grad_b[e * k_count + k]) + gv * av);
        }
        grad_a[e * channels + c] = static_cast<scalar_t>(ga);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> scatter_outer_backward_cpu(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                              const at::Tensor& b_in, const at::Tensor& index_in) {
  check_scatter_inputs(a_in, b_in, index_in);
  const at::Tensor a = row_major(a_in), b = row_major(b_in), index = index_in.contiguous();
  const int64_t edges = a.size(0), channels = a.size(1), kk = b.size(1), width = channels * kk;
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(1) == width, "grad must be [N, ", width, "]");
  const at::Tensor grad = grad_in.to(a.scalar_type()).contiguous();
  at::Tensor grad_a = at::empty({edges, channels}, a.options());
  at::Tensor grad_b = at::empty({edges, kk}, b.options());
  if (edges == 0) return {grad_a, grad_b};
  const int64_t* idx = index.data_ptr<int64_t>();
  const int64_t nodes = grad.size(0);
  for (int64_t e = 0; e < edges; ++e) TORCH_CHECK(idx[e] >= 0 && idx[e] < nodes, "index ", idx[e], " out of range [0, ", nodes, ")");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "scatter_outer_backward", [&] {
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    const scalar_t* pa = a.const_data_ptr<scalar_t>();
    const scalar_t* pb = b.const_data_ptr<scalar_t>();
    scalar_t* pga = grad_a.data_ptr<scalar_t>();
    scalar_t* pgb = grad_b.data_ptr<scalar_t>();
    const int64_t sa = a.stride(0), sb = b.stride(0);
    at::parallel_for(0, edges, 256, [&](int64_t e0, int64_t e1) {
      switch (kk) {
        case 1: scatter_outer_backward_rows<scalar_t, 1>(pg, pa, sa, pb, sb, idx, e0, e1, channels, kk, pga, pgb); break;
        case 3: scatter_outer_backward_rows<scalar_t, 3>(pg, pa, sa, pb, sb, idx, e0, e1, channels, kk, pga, pgb); break;
        case 4: scatter_outer_backward_rows<scalar_t, 4>(pg, pa, sa, pb, sb, idx, e0, e1, channels, kk, pga, pgb); break;
        case 6: scatter_outer_backward_rows<scalar_t, 6>(pg, pa, sa, pb, sb, idx, e0, e1, channels, kk, pga, pgb); break;
        default: scatter_outer_backward_rows<scalar_t, 0>(pg, pa, sa, pb, sb, idx, e0, e1, channels, kk, pga, pgb);
      }
    });
  });
  return {grad_a, grad_b};
}

// ---------------------------------------------------------------------------------------------
// species_linear: out[e, :] = x[e, :] @ weight[species[e]]  (x [E, B], weight [S, B, O])
// The first linear layer over (radial basis x cutoff) (x) one-hot(neighbour species), with the
// one-hot folded into a per-species weight: B*O multiply-adds per edge instead of B*S*O.
// ---------------------------------------------------------------------------------------------
void check_species_inputs(const at::Tensor& species, const at::Tensor& weight, int64_t rows, int64_t basis) {
  TORCH_CHECK(species.dim() == 1 && species.scalar_type() == at::kLong && species.size(0) == rows,
              "species must be a 1-D int64 tensor with one entry per row");
  TORCH_CHECK(weight.dim() == 3 && weight.size(1) == basis, "weight must be [S, ", basis, ", O]");
}

at::Tensor species_linear_cpu(const at::Tensor& x_in, const at::Tensor& species_in, const at::Tensor& weight_in) {
  TORCH_CHECK(x_in.dim() == 2, "x must be 2-D");
  check_species_inputs(species_in, weight_in, x_in.size(0), x_in.size(1));
  const at::Tensor x = row_major(x_in), species = species_in.contiguous(), weight = weight_in.to(x.scalar_type()).contiguous();
  const int64_t rows = x.size(0), basis = x.size(1), outs = weight.size(2), kinds = weight.size(0);
  at::Tensor out = at::empty({rows, outs}, x.options());
  const int64_t* s = species.data_ptr<int64_t>();
  for (int64_t e = 0; e < rows; ++e) TORCH_CHECK(s[e] >= 0 && s[e] < kinds, "species index ", s[e], " out of range [0, ", kinds, ")");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "species_linear", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    const scalar_t* pw = weight.const_data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t sx = x.stride(0);
    at::parallel_for(0, rows, 64, [&](int64_t e0, int64_t e1) {
      std::vector<acc_t> acc(outs);
      for (int64_t e = e0; e < e1; ++e) {
        // axpy over the output row (contiguous, vectorised); no reduction inside the inner loop
        acc_t* row = acc.data();
        for (int64_t o = 0; o < outs; ++o) row[o] = 0;
        const scalar_t* w = pw + s[e] * basis * outs;
        for (int64_t b = 0; b < basis; ++b) {
          const acc_t xv = static_cast<acc_t>(px[e * sx + b]);
          const scalar_t* __restrict__ wb = w + b * outs;
          for (int64_t o = 0; o < outs; ++o) row[o] += xv * static_cast<acc_t>(wb[o]);
        }
        scalar_t* __restrict__ dst = po + e * outs;
        for (int64_t o = 0; o < outs; ++o) dst[o] = static_cast<scalar_t>(row[o]);
      }
    });
  });
  return out;
}

// One row block of species_linear_backward. With the basis size B fixed at compile time the B
// accumulators stay in registers (a local array no pointer can alias) and each o is one vector FMA.
template <typename scalar_t, int B>
void species_linear_backward_rows(const scalar_t* __restrict__ grad, int64_t sg, const scalar_t* __restrict__ weight_t,
                                  const int64_t* __restrict__ s, int64_t e0, int64_t e1, int64_t outs,
                                  scalar_t* __restrict__ grad_x) {
  using acc_t = at::opmath_type<scalar_t>;
  if constexpr (std::is_same_v<scalar_t, float> && B % 8 == 0) {
    // GCC/Clang vector extension: B/8 eight-float registers (AVX, or two SSE halves)
    typedef float v8 __attribute__((vector_size(32)));
    for (int64_t e = e0; e < e1; ++e) {
      v8 row[B / 8] = {};
      const float* g = grad + e * sg;
      const float* w = weight_t + s[e] * outs * B;
      for (int64_t o = 0; o < outs; ++o) {
        const float gv = g[o];
        for (int v = 0; v < B / 8; ++v) {
          v8 wv;
          std::memcpy(&wv, w + o * B + v * 8, sizeof(v8));
          row[v] += gv * wv;
        }
      }
      std::memcpy(grad_x + e * B, row, sizeof(row));
    }
  } else {
    for (int64_t e = e0; e < e1; ++e) {
      acc_t row[B] = {};
      const scalar_t* g = grad + e * sg;
      const scalar_t* w = weight_t + s[e] * outs * B;
      for (int64_t o = 0; o < outs; ++o) {
        const acc_t gv = static_cast<acc_t>(g[o]);
        for (int b = 0; b < B; ++b) row[b] += gv * static_cast<acc_t>(w[o * B + b]);
      }
      for (int b = 0; b < B; ++b) grad_x[e * B + b] = static_cast<scalar_t>(row[b]);
    }
  }
}

template <typename scalar_t>
void species_linear_backward_rows_any(const scalar_t* grad, int64_t sg, const scalar_t* weight_t, const int64_t* s,
                                      int64_t e0, int64_t e1, int64_t outs, int64_t basis, scalar_t* grad_x) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> row(basis);
  for (int64_t e = e0; e < e1; ++e) {
    std::fill(row.begin(), row.end(), acc_t(0));
    const scalar_t* g = grad + e * sg;
    const scalar_t* w = weight_t + s[e] * outs * basis;
    for (int64_t o = 0; o < outs; ++o)
      for (int64_t b = 0; b < basis; ++b) row[b] += static_cast<acc_t>(g[o]) * static_cast<acc_t>(w[o * basis + b]);
    for (int64_t b = 0; b < basis; ++b) grad_x[e * basis + b] = static_cast<scalar_t>(row[b]);
  }
}

// grad_x[e, b] = sum_o grad[e, o] weight[species[e], b, o]; computed as axpys over b with the
// weight transposed to [S, O, B] once per call (no horizontal reductions in the inner loop).
at::Tensor species_linear_backward_cpu(const at::Tensor& grad_in, const at::Tensor& species_in, const at::Tensor& weight_in) {
  TORCH_CHECK(grad_in.dim() == 2 && weight_in.dim() == 3 && grad_in.size(1) == weight_in.size(2), "grad must be [E, O]");
  check_species_inputs(species_in, weight_in, grad_in.size(0), weight_in.size(1));
  const at::Tensor grad = row_major(grad_in), species = species_in.contiguous();
  const at::Tensor weight_t = weight_in.to(grad.scalar_type()).transpose(1, 2).contiguous();  // [S, O, B]
  const int64_t rows = grad.size(0), basis = weight_t.size(2), outs = weight_t.size(1), kinds = weight_t.size(0);
  at::Tensor grad_x = at::empty({rows, basis}, grad.options());
  const int64_t* s = species.data_ptr<int64_t>();
  for (int64_t e = 0; e < rows; ++e) TORCH_CHECK(s[e] >= 0 && s[e] < kinds, "species index ", s[e], " out of range [0, ", kinds, ")");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "species_linear_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    const scalar_t* pw = weight_t.const_data_ptr<scalar_t>();
    scalar_t* px = grad_x.data_ptr<scalar_t>();
    const int64_t sg = grad.stride(0);
    at::parallel_for(0, rows, 64, [&](int64_t e0, int64_t e1) {
      switch (basis) {
        case 4: species_linear_backward_rows<scalar_t, 4>(pg, sg, pw, s, e0, e1, outs, px); break;
        case 8: species_linear_backward_rows<scalar_t, 8>(pg, sg, pw, s, e0, e1, outs, px); break;
        case 16: species_linear_backward_rows<scalar_t, 16>(pg, sg, pw, s, e0, e1, outs, px); break;
        default: species_linear_backward_rows_any<scalar_t>(pg, sg, pw, s, e0, e1, outs, basis, px);
      }
    });
  });
  return grad_x;
}

// ---------------------------------------------------------------------------------------------
// edge_moments: per-atom moments from receiver-sorted edges in one pass, no atomics.
// Blocks l = 0..L-1 each hold C channels of `weights` [E, L*C]; block l with order K_l > 0 takes
// the next K_l columns of `basis` [E, sum K_l]; order 0 is a plain sum. Output row n is
// the blocks in order, block l = sum_{e: centre[e] = n} w_l[e, c] (order 0) or
// w_l[e, c] * y_l[e, k] at column c*K_l + k. `centre` must be non-decreasing (the neighbour
// lists are sorted by centre), so each receiver's edges are one contiguous run: the loop runs
// over receivers, accumulates the receiver's row in a channel-major buffer that stays in L1
// (inner loops over c are unit-stride vector FMAs), and writes it once.
// ---------------------------------------------------------------------------------------------
struct MomentLayout {
  int64_t channels = 0, in_width = 0, basis_width = 0, out_width = 0;
  std::vector<int64_t> orders;
};

MomentLayout moment_layout(const at::Tensor& weights, const at::Tensor& basis, c10::IntArrayRef orders) {
  TORCH_CHECK(!orders.empty(), "edge_moments: orders must name at least one block");
  MomentLayout layout;
  layout.orders.assign(orders.begin(), orders.end());
  for (int64_t k : layout.orders) {
    TORCH_CHECK(k >= 0, "edge_moments: block orders must be >= 0, got ", k);
    layout.basis_width += k;
  }
  const int64_t blocks = static_cast<int64_t>(layout.orders.size());
  TORCH_CHECK(weights.size(1) % blocks == 0, "edge_moments: weights has ", weights.size(1), " columns, not a multiple of ",
              blocks, " blocks");
  layout.channels = weights.size(1) / blocks;
  layout.in_width = weights.size(1);
  TORCH_CHECK(basis.size(1) == layout.basis_width, "edge_moments: basis has ", basis.size(1), " columns, the orders need ",
              layout.basis_width);
  for (int64_t k : layout.orders) layout.out_width += layout.channels * std::max<int64_t>(k, 1);
  return layout;
}

void check_sorted_centre(const at::Tensor& centre, int64_t num_nodes) {
  const int64_t* c = centre.const_data_ptr<int64_t>();
  const int64_t edges = centre.size(0);
  for (int64_t e = 0; e < edges; ++e) {
    TORCH_CHECK(c[e] >= 0 && c[e] < num_nodes, "edge_moments: centre ", c[e], " out of range [0, ", num_nodes, ")");
    TORCH_CHECK(e == 0 || c[e - 1] <= c[e], "edge_moments: edges must be sorted by centre (edge ", e, " has centre ", c[e],
                " after ", c[e - 1], ")");
  }
}

void check_moment_inputs(const at::Tensor& weights, const at::Tensor& basis, const at::Tensor& centre) {
  TORCH_CHECK(centre.dim() == 1 && centre.scalar_type() == at::kLong, "edge_moments: centre must be a 1-D int64 tensor");
  check_rows(weights, "weights", centre.size(0));
  check_rows(basis, "basis", centre.size(0));
  TORCH_CHECK(weights.scalar_type() == basis.scalar_type(), "edge_moments: weights and basis must have one dtype");
  TORCH_CHECK(weights.device() == basis.device() && weights.device() == centre.device(),
              "edge_moments: weights, basis and centre must be on one device");
}

// First edge of receiver n (centre sorted): the start of a thread's receiver range.
int64_t first_edge(const int64_t* centre, int64_t edges, int64_t n) {
  return std::lower_bound(centre, centre + edges, n) - centre;
}

// Receivers [n0, n1). C > 0: channels fixed at compile time (the c loops fully vectorised).
template <typename scalar_t, int C>
void edge_moments_rows(const scalar_t* __restrict__ w, int64_t sw, const scalar_t* __restrict__ y, int64_t sy,
                       const int64_t* __restrict__ centre, int64_t edges, int64_t n0, int64_t n1, const MomentLayout& layout,
                       scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = C > 0 ? C : layout.channels, width = layout.out_width;
  const int64_t blocks = static_cast<int64_t>(layout.orders.size());
  const int64_t* orders = layout.orders.data();
  std::vector<acc_t> buffer(width);
  acc_t* __restrict__ acc = buffer.data();  // receiver row, channel-major within each block: [k][c]
  int64_t e = first_edge(centre, edges, n0);
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(acc, acc + width, acc_t(0));
    for (; e < edges && centre[e] == n; ++e) {
      const scalar_t* we = w + e * sw;
      const scalar_t* ye = y + e * sy;
      acc_t* a = acc;
      for (int64_t l = 0; l < blocks; ++l, we += channels) {
        const int64_t order = orders[l];
        if (order == 0) {
          for (int64_t c = 0; c < channels; ++c) a[c] += static_cast<acc_t>(we[c]);
          a += channels;
          continue;
        }
        for (int64_t k = 0; k < order; ++k, a += channels) {
          const acc_t yk = static_cast<acc_t>(ye[k]);
          for (int64_t c = 0; c < channels; ++c) a[c] += yk * static_cast<acc_t>(we[c]);
        }
        ye += order;
      }
    }
    // transpose each block to the output's [c][k] layout
    scalar_t* o = out + n * width;
    const acc_t* a = acc;
    for (int64_t l = 0; l < blocks; ++l) {
      const int64_t order = std::max<int64_t>(orders[l], 1);
      for (int64_t k = 0; k < order; ++k)
        for (int64_t c = 0; c < channels; ++c) o[c * order + k] = static_cast<scalar_t>(a[k * channels + c]);
      a += order * channels;
      o += order * channels;
    }
  }
}

at::Tensor edge_moments_cpu(const at::Tensor& weights_in, const at::Tensor& basis_in, const at::Tensor& centre_in,
                            int64_t num_nodes, c10::IntArrayRef orders) {
  check_moment_inputs(weights_in, basis_in, centre_in);
  const at::Tensor weights = row_major(weights_in), basis = row_major(basis_in), centre = centre_in.contiguous();
  const MomentLayout layout = moment_layout(weights, basis, orders);
  const int64_t edges = centre.size(0);
  TORCH_CHECK(num_nodes >= 0, "edge_moments: num_nodes must be >= 0, got ", num_nodes);
  check_sorted_centre(centre, num_nodes);
  at::Tensor out = at::empty({num_nodes, layout.out_width}, weights.options());
  if (num_nodes == 0 || layout.out_width == 0) return out;
  const int64_t* pc = centre.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, weights.scalar_type(), "edge_moments", [&] {
    const scalar_t* pw = weights.const_data_ptr<scalar_t>();
    const scalar_t* py = basis.const_data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t sw = weights.stride(0), sy = basis.stride(0);
    at::parallel_for(0, num_nodes, 16, [&](int64_t n0, int64_t n1) {
      switch (layout.channels) {
        case 8: edge_moments_rows<scalar_t, 8>(pw, sw, py, sy, pc, edges, n0, n1, layout, po); break;
        case 16: edge_moments_rows<scalar_t, 16>(pw, sw, py, sy, pc, edges, n0, n1, layout, po); break;
        case 32: edge_moments_rows<scalar_t, 32>(pw, sw, py, sy, pc, edges, n0, n1, layout, po); break;
        default: edge_moments_rows<scalar_t, 0>(pw, sw, py, sy, pc, edges, n0, n1, layout, po);
      }
    });
  });
  return out;
}

// Dot product over the channels with eight independent partial sums, so the compiler vectorises
// it without reassociating (no -ffast-math needed).
template <typename acc_t, typename scalar_t, int C>
inline acc_t channel_dot(const acc_t* __restrict__ g, const scalar_t* __restrict__ w, int64_t channels) {
  if constexpr (C > 0 && C % 8 == 0) {
    acc_t part[8] = {};
    for (int c = 0; c < C; c += 8)
      for (int l = 0; l < 8; ++l) part[l] += g[c + l] * static_cast<acc_t>(w[c + l]);
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  } else {
    acc_t sum = 0;
    for (int64_t c = 0; c < channels; ++c) sum += g[c] * static_cast<acc_t>(w[c]);
    return sum;
  }
}

// One edge's gradients for one outer block (order K): g is the receiver's gradient [K][C].
// For float with C a multiple of 8 the channel loops are explicit eight-float vectors (GCC/Clang
// vector extension): left to the auto-vectoriser, the fully unrolled C loops came out scalar.
template <typename acc_t, typename scalar_t, int C>
inline void outer_block_backward(const acc_t* __restrict__ g, const scalar_t* __restrict__ w, const scalar_t* __restrict__ y,
                                 int64_t order, scalar_t* __restrict__ grad_w, scalar_t* __restrict__ grad_y) {
  if constexpr (std::is_same_v<scalar_t, float> && C % 8 == 0) {
    typedef float v8 __attribute__((vector_size(32)));
    constexpr int V = C / 8;
    v8 wv[V], sum[V] = {};
    std::memcpy(wv, w, sizeof(wv));
    for (int64_t k = 0; k < order; ++k, g += C) {
      const float yk = y[k];
      v8 gk[V], dot = {};
      std::memcpy(gk, g, sizeof(gk));
      for (int v = 0; v < V; ++v) {
        sum[v] += yk * gk[v];
        dot += gk[v] * wv[v];
      }
      grad_y[k] = ((dot[0] + dot[1]) + (dot[2] + dot[3])) + ((dot[4] + dot[5]) + (dot[6] + dot[7]));
    }
    std::memcpy(grad_w, sum, sizeof(sum));
  } else {
    acc_t wv[C], sum[C] = {};
    for (int c = 0; c < C; ++c) wv[c] = static_cast<acc_t>(w[c]);
    for (int64_t k = 0; k < order; ++k, g += C) {
      const acc_t yk = static_cast<acc_t>(y[k]);
      for (int c = 0; c < C; ++c) sum[c] += yk * g[c];
      grad_y[k] = static_cast<scalar_t>(channel_dot<acc_t, acc_t, C>(g, wv, C));
    }
    for (int c = 0; c < C; ++c) grad_w[c] = static_cast<scalar_t>(sum[c]);
  }
}

template <typename acc_t, typename scalar_t>
inline void outer_block_backward_any(const acc_t* g, const scalar_t* w, const scalar_t* y, int64_t order, int64_t channels,
                                     acc_t* sum, scalar_t* grad_w, scalar_t* grad_y) {
  std::fill(sum, sum + channels, acc_t(0));
  for (int64_t k = 0; k < order; ++k, g += channels) {
    const acc_t yk = static_cast<acc_t>(y[k]);
    for (int64_t c = 0; c < channels; ++c) sum[c] += yk * g[c];
    grad_y[k] = static_cast<scalar_t>(channel_dot<acc_t, scalar_t, 0>(g, w, channels));
  }
  for (int64_t c = 0; c < channels; ++c) grad_w[c] = static_cast<scalar_t>(sum[c]);
}

// Receivers [n0, n1) of edge_moments_backward: the receiver's output gradient, transposed to the
// channel-major layout once, stays in L1 while its edges read it (a gather, no scatter); each
// edge's gradient row is written once.
//   grad_w_l[e, c] = g_l[n, c] (order 0), sum_k g_l[n, c, k] y_l[e, k];  grad_y_l[e, k] = sum_c g_l[n, c, k] w_l[e, c]
template <typename scalar_t, int C>
void edge_moments_backward_rows(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ w, int64_t sw,
                                const scalar_t* __restrict__ y, int64_t sy, const int64_t* __restrict__ centre, int64_t edges,
                                int64_t n0, int64_t n1, const MomentLayout& layout, scalar_t* __restrict__ grad_w,
                                scalar_t* __restrict__ grad_y) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = C > 0 ? C : layout.channels, width = layout.out_width;
  const int64_t blocks = static_cast<int64_t>(layout.orders.size());
  const int64_t in_width = layout.in_width, basis_width = layout.basis_width;
  const int64_t* orders = layout.orders.data();
  std::vector<acc_t> buffer(width + channels);
  acc_t* g = buffer.data();  // the receiver's gradient, [k][c] per block
  acc_t* sum = g + width;    // scratch of the any-C path
  int64_t e = first_edge(centre, edges, n0);
  for (int64_t n = n0; n < n1; ++n) {
    if (e >= edges || centre[e] != n) continue;  // no edges: nothing reads this row
    const scalar_t* gn = grad + n * width;
    for (int64_t l = 0, offset = 0; l < blocks; ++l) {
      const int64_t order = std::max<int64_t>(orders[l], 1);
      for (int64_t k = 0; k < order; ++k)
        for (int64_t c = 0; c < channels; ++c) g[offset + k * channels + c] = static_cast<acc_t>(gn[offset + c * order + k]);
      offset += order * channels;
    }
    for (; e < edges && centre[e] == n; ++e) {
      const scalar_t* we = w + e * sw;
      const scalar_t* ye = y + e * sy;
      scalar_t* gw = grad_w + e * in_width;
      scalar_t* gy = grad_y + e * basis_width;
      const acc_t* gl = g;
      for (int64_t l = 0; l < blocks; ++l, we += channels, gw += channels) {
        const int64_t order = orders[l];
        if (order == 0) {
          for (int64_t c = 0; c < channels; ++c) gw[c] = static_cast<scalar_t>(gl[c]);
          gl += channels;
          continue;
        }
        if constexpr (C > 0) {
          outer_block_backward<acc_t, scalar_t, C>(gl, we, ye, order, gw, gy);
        } else {
          outer_block_backward_any<acc_t, scalar_t>(gl, we, ye, order, channels, sum, gw, gy);
        }
        gl += order * channels;
        ye += order;
        gy += order;
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> edge_moments_backward_cpu(const at::Tensor& grad_in, const at::Tensor& weights_in,
                                                             const at::Tensor& basis_in, const at::Tensor& centre_in,
                                                             c10::IntArrayRef orders) {
  check_moment_inputs(weights_in, basis_in, centre_in);
  const at::Tensor weights = row_major(weights_in), basis = row_major(basis_in), centre = centre_in.contiguous();
  const MomentLayout layout = moment_layout(weights, basis, orders);
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(1) == layout.out_width, "edge_moments_backward: grad must be [N, ",
              layout.out_width, "]");
  const at::Tensor grad = grad_in.to(weights.scalar_type()).contiguous();
  const int64_t edges = centre.size(0), num_nodes = grad.size(0);
  check_sorted_centre(centre, num_nodes);
  at::Tensor grad_w = at::empty({edges, layout.in_width}, weights.options());
  at::Tensor grad_y = at::empty({edges, layout.basis_width}, basis.options());
  if (edges == 0) return {grad_w, grad_y};
  const int64_t* pc = centre.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, weights.scalar_type(), "edge_moments_backward", [&] {
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    const scalar_t* pw = weights.const_data_ptr<scalar_t>();
    const scalar_t* py = basis.const_data_ptr<scalar_t>();
    scalar_t* pgw = grad_w.data_ptr<scalar_t>();
    scalar_t* pgy = grad_y.data_ptr<scalar_t>();
    const int64_t sw = weights.stride(0), sy = basis.stride(0);
    at::parallel_for(0, num_nodes, 16, [&](int64_t n0, int64_t n1) {
      switch (layout.channels) {
        case 8: edge_moments_backward_rows<scalar_t, 8>(pg, pw, sw, py, sy, pc, edges, n0, n1, layout, pgw, pgy); break;
        case 16: edge_moments_backward_rows<scalar_t, 16>(pg, pw, sw, py, sy, pc, edges, n0, n1, layout, pgw, pgy); break;
        case 32: edge_moments_backward_rows<scalar_t, 32>(pg, pw, sw, py, sy, pc, edges, n0, n1, layout, pgw, pgy); break;
        default: edge_moments_backward_rows<scalar_t, 0>(pg, pw, sw, py, sy, pc, edges, n0, n1, layout, pgw, pgy);
      }
    });
  });
  return {grad_w, grad_y};
}

// ---------------------------------------------------------------------------------------------
// linear_silu: h = x @ weight^T + bias, y = silu(h); returns (y, h) so the backward needs no
// second matmul. linear_silu_backward: grad_x = (grad_y * silu'(h)) @ weight.
// ---------------------------------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor> linear_silu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "x [M, K] and weight [N, K] do not match");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "bias must be [N]");
  at::Tensor h = at::addmm(bias, x, weight.t());
  at::Tensor y = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "linear_silu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* ph = h.const_data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, h.numel(), 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t v = static_cast<acc_t>(ph[i]);
        py[i] = static_cast<scalar_t>(v / (acc_t(1) + std::exp(-v)));
      }
    });
  });
  return {y, h};
}

at::Tensor linear_silu_backward_cpu(const at::Tensor& grad_y, const at::Tensor& h, const at::Tensor& weight) {
  TORCH_CHECK(grad_y.sizes() == h.sizes(), "grad and h must have one shape");
  const at::Tensor g = grad_y.contiguous(), hc = h.contiguous();
  at::Tensor grad_h = at::empty_like(hc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, hc.scalar_type(), "linear_silu_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pg = g.const_data_ptr<scalar_t>();
    const scalar_t* ph = hc.const_data_ptr<scalar_t>();
    scalar_t* pd = grad_h.data_ptr<scalar_t>();
    at::parallel_for(0, hc.numel(), 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t v = static_cast<acc_t>(ph[i]);
        const acc_t sig = acc_t(1) / (acc_t(1) + std::exp(-v));
        pd[i] = static_cast<scalar_t>(static_cast<acc_t>(pg[i]) * sig * (acc_t(1) + v * (acc_t(1) - sig)));
      }
    });
  });
  return at::mm(grad_h, weight);
}

}  // namespace

TORCH_LIBRARY(mlffc, m) {
  m.def("scatter_outer(Tensor a, Tensor b, Tensor index, SymInt num_nodes) -> Tensor");
  m.def("scatter_outer_backward(Tensor grad, Tensor a, Tensor b, Tensor index) -> (Tensor, Tensor)");
  m.def("species_linear(Tensor x, Tensor species, Tensor weight) -> Tensor");
  m.def("species_linear_backward(Tensor grad, Tensor species, Tensor weight) -> Tensor");
  m.def("linear_silu(Tensor x, Tensor weight, Tensor bias) -> (Tensor, Tensor)");
  m.def("linear_silu_backward(Tensor grad, Tensor h, Tensor weight) -> Tensor");
  m.def("edge_moments(Tensor weights, Tensor basis, Tensor centre, SymInt num_nodes, int[] orders) -> Tensor");
  m.def("edge_moments_backward(Tensor grad, Tensor weights, Tensor basis, Tensor centre, int[] orders) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mlffc, CPU, m) {
  m.impl("scatter_outer", &scatter_outer_cpu);
  m.impl("scatter_outer_backward", &scatter_outer_backward_cpu);
  m.impl("species_linear", &species_linear_cpu);
  m.impl("species_linear_backward", &species_linear_backward_cpu);
  m.impl("linear_silu", &linear_silu_cpu);
  m.impl("linear_silu_backward", &linear_silu_backward_cpu);
  m.impl("edge_moments", &edge_moments_cpu);
  m.impl("edge_moments_backward", &edge_moments_backward_cpu);
}

}  // namespace mlffc
