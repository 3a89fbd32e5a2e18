#include <dlfcn.h>
#include <malloc.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <chrono>
#include <cmath>
#include <mutex>

#include "manifest.hpp"
#include "mlffc/model.hpp"

namespace mlffc {
namespace {
constexpr double kMaxCellLength = 1e4;  // Å, as mlffc/structures.py
constexpr double kMaxAtomDensity = 0.5; // atoms/Å³
}  // namespace

namespace {

const char* const kSymbols[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",  "Cl", "Ar", "K",
    "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",
    "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au",
    "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es",
    "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
constexpr int kMaxZ = 118;

// Closer atoms are a units or input error, not chemistry (as mlffc.structures.MIN_DISTANCE).
constexpr double kMinDistance = 0.1;

// Periodic: x - floor(x H^-1) H (rows of H the cell vectors); otherwise x - mean(x).
std::vector<double> local_positions(int64_t n, const double* positions, const double* h, bool periodic) {
  std::vector<double> local(positions, positions + 3 * n);
  if (periodic) {
    double det = h[0] * (h[4] * h[8] - h[5] * h[7]) - h[1] * (h[3] * h[8] - h[5] * h[6]) + h[2] * (h[3] * h[7] - h[4] * h[6]);
    double inv[9] = {(h[4] * h[8] - h[5] * h[7]) / det, (h[2] * h[7] - h[1] * h[8]) / det, (h[1] * h[5] - h[2] * h[4]) / det,
                     (h[5] * h[6] - h[3] * h[8]) / det, (h[0] * h[8] - h[2] * h[6]) / det, (h[2] * h[3] - h[0] * h[5]) / det,
                     (h[3] * h[7] - h[4] * h[6]) / det, (h[1] * h[6] - h[0] * h[7]) / det, (h[0] * h[4] - h[1] * h[3]) / det};
    for (int64_t i = 0; i < n; ++i) {
      const double* x = positions + 3 * i;
      double shift[3];
      for (int a = 0; a < 3; ++a) shift[a] = std::floor(x[0] * inv[a] + x[1] * inv[3 + a] + x[2] * inv[6 + a]);
      for (int d = 0; d < 3; ++d) local[3 * i + d] = x[d] - (shift[0] * h[d] + shift[1] * h[3 + d] + shift[2] * h[6 + d]);
    }
    return local;
  }
  double mean[3] = {0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) mean[d] += positions[3 * i + d] / static_cast<double>(n);
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) local[3 * i + d] -= mean[d];
  }
  return local;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// True once some library (Python's torch.ops.load_library or an earlier artifact) registered ops in
// the mlffc namespace.
bool mlffc_ops_registered() {
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("mlffc::", 0) == 0) return true;
  }
  return false;
}

}  // namespace

const char* element_symbol(int z) { return z >= 1 && z <= kMaxZ ? kSymbols[z] : "?"; }

int atomic_number(const std::string& symbol) {
  for (int z = 1; z <= kMaxZ; ++z) {
    if (symbol == kSymbols[z]) return z;
  }
  return 0;
}

void tune_malloc() {
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);   // the largest glibc accepts on 64-bit
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
  });
}

struct Model::Impl {
  Manifest manifest;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  std::vector<bool> supported = std::vector<bool>(kMaxZ + 1, false);
  std::string supported_names;

  // At least one atom, each of a supported element at a finite position.
  void check_atoms(int64_t n, const int32_t* species, const double* positions) const {
    if (n <= 0) throw Error("the structure has no atoms");
    if (species == nullptr || positions == nullptr) throw Error("species and positions must not be null");
    for (int64_t i = 0; i < n; ++i) {
      int z = species[i];
      if (z < 1 || z > kMaxZ || !supported[z]) {
        throw Error("atom " + std::to_string(i) + ": element " + (z >= 1 && z <= kMaxZ ? element_symbol(z) : "Z=" + std::to_string(z)) +
                    " is not supported (supported: " + supported_names + ")");
      }
      for (int d = 0; d < 3; ++d) {
        if (!std::isfinite(positions[3 * i + d])) throw Error("position of atom " + std::to_string(i) + " is NaN or infinite");
      }
    }
  }

  // The compiled graph: energy [B], forces [N, 3], stress [B, 3, 3].
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs) {
    std::vector<at::Tensor> outputs;
    {
      c10::InferenceMode guard;
      outputs = loader->run(inputs);
    }
    if (outputs.size() != 3) throw Error("the compiled model returned " + std::to_string(outputs.size()) + " outputs, expected 3");
    return outputs;
  }
};

Model::Model(const std::string& artifact, int threads) : impl_(std::make_unique<Impl>()) {
  tune_malloc();
  Manifest manifest = read_manifest(artifact);
  verify_payload(artifact, manifest);
  check_compatible(manifest);
  at::set_num_threads(threads > 0 ? threads : manifest.threads);
  // The package calls the mlffc fused ops: their library must be loaded (globally) first, once per
  // process: a second copy would register the mlffc namespace again, which aborts the process.
  if (!mlffc_ops_registered()) {
    for (const auto& library : manifest.libraries) {
      std::string path = member(artifact, library);
      if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
        throw Error(artifact + ": cannot load its op library " + library + ": " + dlerror());
      }
    }
  }
  try {
    impl_->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(member(artifact, manifest.entry));
  } catch (const std::exception& error) {
    throw Error(artifact + ": could not load " + manifest.entry + ": " + error.what());
  }
  for (int z : manifest.species) {
    impl_->supported[z] = true;
    impl_->supported_names += (impl_->supported_names.empty() ? "" : ", ") + std::string(element_symbol(z));
  }
  impl_->manifest = std::move(manifest);
}

Model::~Model() = default;

double Model::cutoff() const { return impl_->manifest.cutoff; }

bool Model::periodic() const { return impl_->manifest.periodic; }

int Model::interactions() const { return impl_->manifest.interactions; }

const std::vector<int>& Model::species() const { return impl_->manifest.species; }

Result Model::compute(int64_t n, const int32_t* species, const double* positions, const double* cell, bool periodic) {
  impl_->check_atoms(n, species, positions);
  if (periodic) {
    if (!impl_->manifest.periodic) throw Error("periodic cells are not supported by this model");
    if (cell == nullptr) throw Error("periodic structure without a cell");
    double det = cell[0] * (cell[4] * cell[8] - cell[5] * cell[7]) - cell[1] * (cell[3] * cell[8] - cell[5] * cell[6]) +
                 cell[2] * (cell[3] * cell[7] - cell[4] * cell[6]);
    // the Python runtime's check_cell (mlffc/structures.py), before the neighbour search sees it
    for (int k = 0; k < 9; ++k) {
      if (!std::isfinite(cell[k])) throw Error("the cell must be 3 x 3 finite numbers (Å)");
    }
    for (int a = 0; a < 3; ++a) {
      double length = std::sqrt(cell[3 * a] * cell[3 * a] + cell[3 * a + 1] * cell[3 * a + 1] + cell[3 * a + 2] * cell[3 * a + 2]);
      if (length > kMaxCellLength) throw Error("cell vector of " + std::to_string(length) + " Å; at most 1e4 Å is allowed");
    }
    if (!(std::abs(det) >= 1e-6)) throw Error("periodic but the cell has zero volume");
    for (int a = 0; a < 3; ++a) {
      const double* u = cell + 3 * ((a + 1) % 3);
      const double* v = cell + 3 * ((a + 2) % 3);
      double cx = u[1] * v[2] - u[2] * v[1], cy = u[2] * v[0] - u[0] * v[2], cz = u[0] * v[1] - u[1] * v[0];
      double width = std::abs(det) / std::sqrt(cx * cx + cy * cy + cz * cz);
      if (width < kMinDistance) throw Error("the cell is " + std::to_string(width) + " Å thick; at least 0.1 Å is allowed");
    }
    if (static_cast<double>(n) / std::abs(det) > kMaxAtomDensity) {
      throw Error("more than 0.5 atoms/Å³: denser than any matter; the cell must be in Å");
    }
  }

  Result result;
  auto started = std::chrono::steady_clock::now();
  // positions moved near the origin in double, as the Python runtime does (mlffc/graph.py
  // local_positions): wrapped into the cell, or centred; float32 then keeps their precision
  std::vector<double> local = local_positions(n, positions, cell, periodic);
  positions = local.data();
  Neighbours pairs = neighbour_list(n, positions, cell, periodic, impl_->manifest.cutoff);
  int64_t edges = static_cast<int64_t>(pairs.size());
  auto edge_index = at::empty({2, edges}, at::kLong);
  auto shifts = at::empty({edges, 3}, at::kFloat);
  auto cell_tensor = at::zeros({1, 3, 3}, at::kFloat);
  int64_t* ei = edge_index.data_ptr<int64_t>();
  float* sh = shifts.data_ptr<float>();
  float* ce = cell_tensor.data_ptr<float>();
  double h[9] = {0};
  if (periodic) {
    for (int k = 0; k < 9; ++k) h[k] = cell[k], ce[k] = static_cast<float>(cell[k]);
  }
  for (int64_t e = 0; e < edges; ++e) {
    int64_t i = pairs.centre[e], j = pairs.neighbour[e];
    const int32_t* s = &pairs.shifts[3 * e];
    ei[e] = i;
    ei[edges + e] = j;
    double r2 = 0;
    for (int d = 0; d < 3; ++d) {
      sh[3 * e + d] = static_cast<float>(s[d]);
      double r = positions[3 * j + d] - positions[3 * i + d] + s[0] * h[d] + s[1] * h[3 + d] + s[2] * h[6 + d];
      r2 += r * r;
    }
    if (r2 < kMinDistance * kMinDistance) {
      throw Error("atoms " + std::to_string(i) + " and " + std::to_string(j) + " are " + std::to_string(std::sqrt(r2)) +
                  " Å apart; positions must be in Å and atoms must not overlap");
    }
  }
  auto positions_tensor = at::empty({n, 3}, at::kFloat);
  auto species_tensor = at::empty({n}, at::kLong);
  float* xp = positions_tensor.data_ptr<float>();
  int64_t* zp = species_tensor.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    zp[i] = species[i];
    for (int d = 0; d < 3; ++d) xp[3 * i + d] = static_cast<float>(positions[3 * i + d]);
  }
  auto batch = at::zeros({n}, at::kLong);
  result.neighbours_seconds = seconds_since(started);
  result.edges = edges;

  started = std::chrono::steady_clock::now();
  std::vector<at::Tensor> outputs = impl_->run({positions_tensor, species_tensor, edge_index, shifts, cell_tensor, batch});
  result.model_seconds = seconds_since(started);
  result.energy = outputs[0].to(at::kDouble).item<double>();
  auto forces = outputs[1].to(at::kDouble).contiguous();
  result.forces.assign(forces.data_ptr<double>(), forces.data_ptr<double>() + 3 * n);
  auto stress = outputs[2].to(at::kDouble).contiguous();
  std::copy(stress.data_ptr<double>(), stress.data_ptr<double>() + 9, result.stress.begin());
  return result;
}

GraphResult Model::compute_edges(int64_t n, const int32_t* species, const double* positions, const Edges& edges,
                                 const int64_t* structure, int64_t structures) {
  impl_->check_atoms(n, species, positions);
  if (structures < 1) throw Error("structures must be >= 1, got " + std::to_string(structures));
  const int64_t count = static_cast<int64_t>(edges.size());
  if (static_cast<int64_t>(edges.neighbour.size()) != count || static_cast<int64_t>(edges.offsets.size()) != 3 * count) {
    throw Error("edges: centre [E], neighbour [E] and offsets [E, 3] disagree in length");
  }
  // centred in double as compute centres an open structure: float32 then keeps the vectors' precision
  std::vector<double> local = local_positions(n, positions, nullptr, false);
  auto edge_index = at::empty({2, count}, at::kLong);
  auto shifts = at::empty({count, 3}, at::kFloat);
  int64_t* ei = edge_index.data_ptr<int64_t>();
  float* sh = shifts.data_ptr<float>();
  for (int64_t e = 0; e < count; ++e) {
    int64_t i = edges.centre[e], j = edges.neighbour[e];
    if (i < 0 || i >= n || j < 0 || j >= n) throw Error("edge " + std::to_string(e) + " names an atom outside 0.." + std::to_string(n - 1));
    if (e > 0 && i < edges.centre[e - 1]) throw Error("edges must be sorted by centre atom (edge " + std::to_string(e) + ")");
    ei[e] = i;
    ei[count + e] = j;
    double r2 = 0;
    for (int d = 0; d < 3; ++d) {
      double offset = edges.offsets[3 * e + d];
      sh[3 * e + d] = static_cast<float>(offset);
      double r = local[3 * j + d] - local[3 * i + d] + offset;
      r2 += r * r;
    }
    if (r2 < kMinDistance * kMinDistance) {
      throw Error("atoms " + std::to_string(i) + " and " + std::to_string(j) + " are " + std::to_string(std::sqrt(r2)) +
                  " Å apart; positions must be in Å and atoms must not overlap");
    }
  }
  auto positions_tensor = at::empty({n, 3}, at::kFloat);
  auto species_tensor = at::empty({n}, at::kLong);
  auto batch = at::zeros({n}, at::kLong);
  float* xp = positions_tensor.data_ptr<float>();
  int64_t* zp = species_tensor.data_ptr<int64_t>();
  int64_t* bp = batch.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    zp[i] = species[i];
    for (int d = 0; d < 3; ++d) xp[3 * i + d] = static_cast<float>(local[3 * i + d]);
    if (structure != nullptr) {
      if (structure[i] < 0 || structure[i] >= structures) {
        throw Error("atom " + std::to_string(i) + " is in group " + std::to_string(structure[i]) + " of " + std::to_string(structures));
      }
      bp[i] = structure[i];
    }
  }
  // unit cells: the model's shift @ cell is then the offset itself, and its stress (virial over
  // the volume) the virial
  auto cell = at::eye(3, at::kFloat).expand({structures, 3, 3}).contiguous();
  std::vector<at::Tensor> outputs = impl_->run({positions_tensor, species_tensor, edge_index, shifts, cell, batch});
  GraphResult result;
  auto energy = outputs[0].to(at::kDouble).contiguous();
  result.energy.assign(energy.data_ptr<double>(), energy.data_ptr<double>() + structures);
  auto forces = outputs[1].to(at::kDouble).contiguous();
  result.forces.assign(forces.data_ptr<double>(), forces.data_ptr<double>() + 3 * n);
  auto virial = outputs[2].to(at::kDouble).contiguous();
  result.virial.resize(structures);
  for (int64_t b = 0; b < structures; ++b) std::copy(virial.data_ptr<double>() + 9 * b, virial.data_ptr<double>() + 9 * (b + 1), result.virial[b].begin());
  return result;
}

}  // namespace mlffc
