// CUDA kernels of the mlffc fused ops (schemas and CPU kernels in ops.cpp). Built only where nvcc
// and a CUDA GPU exist (mlffc/ops/__init__.py). Straightforward one-thread-per-output kernels with
// atomics for the scatter; index ranges are checked on the device (CUDA_KERNEL_ASSERT).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace mlffc {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

at::Tensor rows(const at::Tensor& t) { return t.stride(1) == 1 ? t : t.contiguous(); }

template <typename scalar_t, typename acc_t>
__global__ void scatter_outer_kernel(const scalar_t* a, int64_t sa, const scalar_t* b, int64_t sb, const int64_t* index,
                                     int64_t edges, int64_t channels, int64_t kk, int64_t nodes, acc_t* out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= edges * channels) return;
  const int64_t e = t / channels, c = t % channels, i = index[e];
  CUDA_KERNEL_ASSERT(i >= 0 && i < nodes);
  const acc_t av = static_cast<acc_t>(a[e * sa + c]);
  for (int64_t k = 0; k < kk; ++k) atomicAdd(out + i * channels * kk + c * kk + k, av * static_cast<acc_t>(b[e * sb + k]));
}

template <typename scalar_t, typename acc_t>
__global__ void scatter_outer_backward_kernel(const scalar_t* grad, const scalar_t* a, int64_t sa, const scalar_t* b, int64_t sb,
                                              const int64_t* index, int64_t edges, int64_t channels, int64_t kk,
                                              int64_t nodes, scalar_t* grad_a, scalar_t* grad_b) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= edges) return;
  const int64_t i = index[e];
  CUDA_KERNEL_ASSERT(i >= 0 && i < nodes);
  const scalar_t* g = grad + i * channels * kk;
  for (int64_t k = 0; k < kk; ++k) {
    acc_t gb = 0;
    for (int64_t c = 0; c < channels; ++c) gb += static_cast<acc_t>(g[c * kk + k]) * static_cast<acc_t>(a[e * sa + c]);
    grad_b[e * kk + k] = static_cast<scalar_t>(gb);
  }
  for (int64_t c = 0; c < channels; ++c) {
    acc_t ga = 0;
    for (int64_t k = 0; k < kk; ++k) ga += static_cast<acc_t>(g[c * kk + k]) * static_cast<acc_t>(b[e * sb + k]);
    grad_a[e * channels + c] = static_cast<scalar_t>(ga);
  }
}

at::Tensor scatter_outer_cuda(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& index_in, int64_t num_nodes) {
  TORCH_CHECK(a_in.dim() == 2 && b_in.dim() == 2 && index_in.dim() == 1 && a_in.size(0) == b_in.size(0) &&
              a_in.size(0) == index_in.size(0), "scatter_outer: a [E, C], b [E, K], index [E]");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = rows(a_in), b = rows(b_in), index = index_in.contiguous();
  const int64_t edges = a.size(0), channels = a.size(1), kk = b.size(1);
  at::Tensor out = at::zeros({num_nodes, channels * kk}, a.options().dtype(at::toOpMathType(a.scalar_type())));
  if (edges == 0 || channels * kk == 0) return out.to(a.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "scatter_outer_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scatter_outer_kernel<scalar_t, acc_t><<<blocks_for(edges * channels), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        a.const_data_ptr<scalar_t>(), a.stride(0), b.const_data_ptr<scalar_t>(), b.stride(0), index.const_data_ptr<int64_t>(),
        edges, channels, kk, num_nodes, out.data_ptr<acc_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out.scalar_type() == a.scalar_type() ? out : out.to(a.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> scatter_outer_backward_cuda(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                               const at::Tensor& b_in, const at::Tensor& index_in) {
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = rows(a_in), b = rows(b_in), index = index_in.contiguous();
  const int64_t edges = a.size(0), channels = a.size(1), kk = b.size(1);
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(1) == channels * kk, "grad must be [N, C*K]");
  const at::Tensor grad = grad_in.to(a.scalar_type()).contiguous();
  at::Tensor grad_a = at::empty({edges, channels}, a.options()), grad_b = at::empty({edges, kk}, b.options());
  if (edges == 0) return {grad_a, grad_b};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "scatter_outer_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scatter_outer_backward_kernel<scalar_t, acc_t><<<blocks_for(edges), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(), a.stride(0), b.const_data_ptr<scalar_t>(), b.stride(0),
        index.const_data_ptr<int64_t>(), edges, channels, kk, grad.size(0), grad_a.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_a, grad_b};
}

template <typename scalar_t, typename acc_t>
__global__ void species_linear_kernel(const scalar_t* x, int64_t sx, const int64_t* species, const scalar_t* weight,
                                      int64_t rows_, int64_t basis, int64_t outs, int64_t kinds, scalar_t* out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= rows_ * outs) return;
  const int64_t e = t / outs, o = t % outs, s = species[e];
  CUDA_KERNEL_ASSERT(s >= 0 && s < kinds);
  acc_t acc = 0;
  for (int64_t b = 0; b < basis; ++b) acc += static_cast<acc_t>(x[e * sx + b]) * static_cast<acc_t>(weight[(s * basis + b) * outs + o]);
  out[t] = static_cast<scalar_t>(acc);
}

template <typename scalar_t, typename acc_t>
__global__ void species_linear_backward_kernel(const scalar_t* grad, int64_t sg, const int64_t* species, const scalar_t* weight,
                                               int64_t rows_, int64_t basis, int64_t outs, int64_t kinds, scalar_t* grad_x) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= rows_ * basis) return;
  const int64_t e = t / basis, b = t % basis, s = species[e];
  CUDA_KERNEL_ASSERT(s >= 0 && s < kinds);
  acc_t acc = 0;
  for (int64_t o = 0; o < outs; ++o) acc += static_cast<acc_t>(grad[e * sg + o]) * static_cast<acc_t>(weight[(s * basis + b) * outs + o]);
  grad_x[t] = static_cast<scalar_t>(acc);
}

at::Tensor species_linear_cuda(const at::Tensor& x_in, const at::Tensor& species_in, const at::Tensor& weight_in) {
  TORCH_CHECK(x_in.dim() == 2 && weight_in.dim() == 3 && weight_in.size(1) == x_in.size(1), "species_linear: x [E, B], weight [S, B, O]");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = rows(x_in), species = species_in.contiguous(), weight = weight_in.to(x.scalar_type()).contiguous();
  const int64_t n = x.size(0), basis = x.size(1), outs = weight.size(2);
  at::Tensor out = at::empty({n, outs}, x.options());
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "species_linear_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    species_linear_kernel<scalar_t, acc_t><<<blocks_for(n * outs), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), x.stride(0), species.const_data_ptr<int64_t>(), weight.const_data_ptr<scalar_t>(), n, basis,
        outs, weight.size(0), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor species_linear_backward_cuda(const at::Tensor& grad_in, const at::Tensor& species_in, const at::Tensor& weight_in) {
  TORCH_CHECK(grad_in.dim() == 2 && weight_in.dim() == 3 && grad_in.size(1) == weight_in.size(2), "grad must be [E, O]");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = rows(grad_in), species = species_in.contiguous(), weight = weight_in.to(grad.scalar_type()).contiguous();
  const int64_t n = grad.size(0), basis = weight.size(1), outs = weight.size(2);
  at::Tensor grad_x = at::empty({n, basis}, grad.options());
  if (n == 0) return grad_x;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "species_linear_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    species_linear_backward_kernel<scalar_t, acc_t><<<blocks_for(n * basis), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.const_data_ptr<scalar_t>(), grad.stride(0), species.const_data_ptr<int64_t>(), weight.const_data_ptr<scalar_t>(), n,
        basis, outs, weight.size(0), grad_x.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_x;
}

template <typename scalar_t, typename acc_t>
__global__ void silu_kernel(const scalar_t* h, scalar_t* y, int64_t n) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n) return;
  const acc_t v = static_cast<acc_t>(h[t]);
  y[t] = static_cast<scalar_t>(v / (acc_t(1) + exp(-v)));
}

template <typename scalar_t, typename acc_t>
__global__ void silu_backward_kernel(const scalar_t* g, const scalar_t* h, scalar_t* out, int64_t n) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n) return;
  const acc_t v = static_cast<acc_t>(h[t]), s = acc_t(1) / (acc_t(1) + exp(-v));
  out[t] = static_cast<scalar_t>(static_cast<acc_t>(g[t]) * s * (acc_t(1) + v * (acc_t(1) - s)));
}

std::tuple<at::Tensor, at::Tensor> linear_silu_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "x [M, K] and weight [N, K] do not match");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor h = at::addmm(bias, x, weight.t()).contiguous();
  at::Tensor y = at::empty_like(h);
  if (h.numel() == 0) return {y, h};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "linear_silu_cuda", [&] {
    silu_kernel<scalar_t, at::opmath_type<scalar_t>><<<blocks_for(h.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        h.const_data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), h.numel());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {y, h};
}

at::Tensor linear_silu_backward_cuda(const at::Tensor& grad_y, const at::Tensor& h_in, const at::Tensor& weight) {
  const c10::cuda::CUDAGuard guard(h_in.device());
  const at::Tensor g = grad_y.contiguous(), h = h_in.contiguous();
  at::Tensor grad_h = at::empty_like(h);
  if (h.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "linear_silu_backward_cuda", [&] {
      silu_backward_kernel<scalar_t, at::opmath_type<scalar_t>><<<blocks_for(h.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          g.const_data_ptr<scalar_t>(), h.const_data_ptr<scalar_t>(), grad_h.data_ptr<scalar_t>(), h.numel());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return at::mm(grad_h, weight);
}

}  // namespace

TORCH_LIBRARY_IMPL(mlffc, CUDA, m) {
  m.impl("scatter_outer", &scatter_outer_cuda);
  m.impl("scatter_outer_backward", &scatter_outer_backward_cuda);
  m.impl("species_linear", &species_linear_cuda);
  m.impl("species_linear_backward", &species_linear_backward_cuda);
  m.impl("linear_silu", &linear_silu_cuda);
  m.impl("linear_silu_backward", &linear_silu_backward_cuda);
}

}  // namespace mlffc
