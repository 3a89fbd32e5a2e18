// Load the mlffc op library, then an AOTInductor package, and print energy and forces of a water molecule.
#include <dlfcn.h>
#include <cstdio>
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: %s PACKAGE.pt2 [OPS.so]\n", argv[0]); return 2; }
  if (argc > 2 && !dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL)) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  torch::inductor::AOTIModelPackageLoader loader(argv[1]);
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  auto i64 = at::TensorOptions().dtype(at::kLong);
  auto positions = at::tensor({0.0f, 0.0f, 0.119f, 0.0f, 0.763f, -0.477f, 0.0f, -0.763f, -0.477f}, f32).view({3, 3});
  auto species = at::tensor({8, 1, 1}, i64);
  auto edge_index = at::tensor({0, 0, 1, 1, 2, 2, 1, 2, 0, 2, 0, 1}, i64).view({2, 6});
  auto shifts = at::zeros({6, 3}, f32);
  auto cell = at::zeros({1, 3, 3}, f32);
  auto batch = at::zeros({3}, i64);
  std::vector<at::Tensor> outputs = loader.run({positions, species, edge_index, shifts, cell, batch});
  std::printf("%.10f\n", outputs[0].item<double>());
  auto forces = outputs[1].contiguous();
  for (int64_t k = 0; k < forces.numel(); ++k) std::printf("%.8f\n", forces.data_ptr<float>()[k]);
  return 0;
}
