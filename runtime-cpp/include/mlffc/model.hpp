// mlffc C++ runtime: a compiled artifact behind one call, energy (eV), forces (eV/Å) and
// stress (eV/Å³) of one structure. Torch stays behind the implementation: including this header
// needs no torch headers.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define MLFFC_API __attribute__((visibility("default")))

namespace mlffc {

// Bad input, a refused artifact or a missing file; the message says what to do.
class MLFFC_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Full, centre-sorted neighbour list, the convention of toolchain/graph.py: pairs (i, j) with
// r_ij = x_j - x_i + shift · cell, each pair in both directions.
struct Neighbours {
  std::vector<int64_t> centre;
  std::vector<int64_t> neighbour;
  std::vector<int32_t> shifts;  // [E, 3] integer cell shifts
  std::size_t size() const { return centre.size(); }
};

// O(N) cell list. positions [n, 3] Å; cell [3, 3] rows are lattice vectors (ignored when not
// periodic). Periodic cells smaller than the cutoff are fine: every image within it is listed.
MLFFC_API Neighbours neighbour_list(int64_t n, const double* positions, const double* cell, bool periodic, double cutoff);

struct Result {
  double energy = 0.0;                 // eV
  std::vector<double> forces;          // [n, 3] eV/Å
  std::array<double, 9> stress{};      // [3, 3] eV/Å³, zero for a non-periodic structure
  int64_t edges = 0;                   // pairs the model saw
  double neighbours_seconds = 0.0;     // neighbour list and input tensors
  double model_seconds = 0.0;          // time in the compiled model
};

// A graph the caller built from its own neighbour list (an MD engine's, with its ghost atoms):
// directed edges centre -> neighbour with r_ij = x_j - x_i + offset_ij, the offset (Å) being the
// displacement of a periodic image (zero between atoms given by their own positions).
struct Edges {
  std::vector<int64_t> centre;
  std::vector<int64_t> neighbour;
  std::vector<double> offsets;  // [E, 3] Å
  std::size_t size() const { return centre.size(); }
};

struct GraphResult {
  std::vector<double> energy;                // [structures] eV: the energies of each group's atoms
  std::vector<double> forces;                // [n, 3] eV/Å: minus the gradient of the summed energy
  std::vector<std::array<double, 9>> virial; // [structures] sum over edges centred in the group of dE/dr_ij (x) r_ij, eV
};

class MLFFC_API Model {
 public:
  // Reads ARTIFACT/manifest.json, checks payload hashes and that this build can run it (torch
  // release, CPU architecture and vector ISA, cpu target, aoti backend), then loads the package.
  // threads <= 0: the thread count the artifact was built for.
  explicit Model(const std::string& artifact, int threads = 0);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // species: atomic numbers [n]; positions [n, 3] Å; cell [3, 3] Å (rows; may be null when not
  // periodic); periodic: all three directions or none.
  Result compute(int64_t n, const int32_t* species, const double* positions, const double* cell, bool periodic);

  // The compiled model on a caller-built graph: atoms in `structures` groups by `structure` [n]
  // (null: one group), so that atoms with no edges centred on them (ghosts) can be kept out of
  // the energy that counts. Checks species, finite positions and overlapping atoms as compute does.
  GraphResult compute_edges(int64_t n, const int32_t* species, const double* positions, const Edges& edges,
                            const int64_t* structure = nullptr, int64_t structures = 1);

  double cutoff() const;
  const std::vector<int>& species() const;
  bool periodic() const;   // capabilities.periodic: the model was trained on periodic cells
  // How many cutoffs an atom's energy reaches (message-passing steps; 1 for a local model, 0 unknown).
  int interactions() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Raises glibc's mmap and trim thresholds once per process (Model does it on construction):
// with the defaults every call mmaps and unmaps its larger tensors, ~30% slower per step.
MLFFC_API void tune_malloc();

}  // namespace mlffc

namespace mlffc {

// Element symbol of atomic number z ("?" outside 1..118), and the atomic number of a symbol
// (0 when unknown).
MLFFC_API const char* element_symbol(int z);
MLFFC_API int atomic_number(const std::string& symbol);

}  // namespace mlffc
