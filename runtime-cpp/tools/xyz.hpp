// Reader for XYZ and extended XYZ files (as ase.io.write writes them): per frame, species,
// positions, and from the comment line Lattice="..." and pbc="...".
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mlffc {

struct Frame {
  std::vector<int32_t> species;     // atomic numbers
  std::vector<double> positions;    // [n, 3] Å
  std::array<double, 9> cell{};     // rows are lattice vectors, Å
  std::array<bool, 3> pbc{};
};

// Throws mlffc::Error naming the file and line of the first problem.
std::vector<Frame> read_xyz(const std::string& path);

}  // namespace mlffc
