// O(N) cell list with the edge convention of toolchain/graph.py.
//
// Atoms are binned in a grid of cells at least `cutoff` wide along each lattice direction (for a
// periodic cell, after wrapping into it; otherwise over the atoms' bounding box). Each atom's
// neighbours lie in the cells within `reach` steps of its own; a periodic step past the grid's edge
// is an image, and the integer shift of the pair follows from the image and from how far each
// atom was wrapped. A periodic cell thinner than the cutoff gets reach > 1: all images within the
// cutoff are found, the atom's own images included.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "mlffc/model.hpp"

namespace mlffc {
namespace {

using Vec3 = std::array<double, 3>;

Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Bounds the grid when atoms are sparse (a molecule in a huge box): more cells than ~atoms only
// costs memory and empty-cell visits.
constexpr int64_t kMaxCellsPerAtom = 8;

}  // namespace

Neighbours neighbour_list(int64_t n, const double* positions, const double* cell, bool periodic, double cutoff) {
  if (n < 0) throw Error("negative atom count");
  if (!(cutoff > 0)) throw Error("cutoff must be positive");
  Neighbours out;
  if (n == 0) return out;

  // Frame: `axes` rows span the grid, `origin` is its corner. Fractional coordinates f in [0, 1).
  std::array<Vec3, 3> axes{};
  Vec3 origin{0, 0, 0};
  if (periodic) {
    for (int a = 0; a < 3; ++a) axes[a] = {cell[3 * a], cell[3 * a + 1], cell[3 * a + 2]};
  } else {
    Vec3 lo{INFINITY, INFINITY, INFINITY}, hi{-INFINITY, -INFINITY, -INFINITY};
    for (int64_t i = 0; i < n; ++i) {
      for (int d = 0; d < 3; ++d) {
        lo[d] = std::min(lo[d], positions[3 * i + d]);
        hi[d] = std::max(hi[d], positions[3 * i + d]);
      }
    }
    for (int d = 0; d < 3; ++d) {
      axes[d] = {0, 0, 0};
      axes[d][d] = std::max(hi[d] - lo[d], cutoff) * (1 + 1e-9) + 1e-9;
    }
    origin = lo;
  }
  Vec3 normals[3] = {cross(axes[1], axes[2]), cross(axes[2], axes[0]), cross(axes[0], axes[1])};
  double volume = dot(axes[0], normals[0]);
  if (!(std::abs(volume) > 1e-12)) throw Error("periodic cell has zero volume");
  // Width of the frame along each direction (distance between opposite faces).
  Vec3 width;
  for (int a = 0; a < 3; ++a) width[a] = std::abs(volume) / std::sqrt(dot(normals[a], normals[a]));

  std::array<int64_t, 3> cells, reach;
  for (int a = 0; a < 3; ++a) cells[a] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(width[a] / cutoff)));
  while (cells[0] * cells[1] * cells[2] > kMaxCellsPerAtom * n + 27) {
    int a = static_cast<int>(std::max_element(cells.begin(), cells.end()) - cells.begin());
    cells[a] = std::max<int64_t>(1, cells[a] / 2);
  }
  for (int a = 0; a < 3; ++a) reach[a] = static_cast<int64_t>(std::ceil(cutoff * cells[a] / width[a]));

  // Bin: fractional coordinates, wrap count (periodic) and cell of every atom.
  std::vector<Vec3> wrapped(n);
  std::vector<std::array<int64_t, 3>> wraps(n), bins(n);
  std::vector<int64_t> cell_of(n);
  for (int64_t i = 0; i < n; ++i) {
    Vec3 x{positions[3 * i] - origin[0], positions[3 * i + 1] - origin[1], positions[3 * i + 2] - origin[2]};
    Vec3 shift_back{0, 0, 0};
    for (int a = 0; a < 3; ++a) {
      double f = dot(x, normals[a]) / volume;
      if (!std::isfinite(f)) throw Error("position of atom " + std::to_string(i) + " is NaN or infinite");
      int64_t w = periodic ? static_cast<int64_t>(std::floor(f)) : 0;
      wraps[i][a] = w;
      f -= static_cast<double>(w);
      bins[i][a] = std::clamp<int64_t>(static_cast<int64_t>(f * cells[a]), 0, cells[a] - 1);
      for (int d = 0; d < 3; ++d) shift_back[d] += w * axes[a][d];
    }
    for (int d = 0; d < 3; ++d) wrapped[i][d] = x[d] - shift_back[d];
    cell_of[i] = (bins[i][0] * cells[1] + bins[i][1]) * cells[2] + bins[i][2];
  }
  // Counting sort of atoms by cell.
  int64_t total = cells[0] * cells[1] * cells[2];
  std::vector<int64_t> start(total + 1, 0), members(n);
  for (int64_t i = 0; i < n; ++i) ++start[cell_of[i] + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) members[fill[cell_of[i]]++] = i;
  }

  double cutoff2 = cutoff * cutoff;
  struct Pair {
    int64_t j;
    std::array<int32_t, 3> shift;
  };
  std::vector<Pair> found;
  out.centre.reserve(static_cast<std::size_t>(n) * 48);
  out.neighbour.reserve(static_cast<std::size_t>(n) * 48);
  out.shifts.reserve(static_cast<std::size_t>(n) * 48 * 3);
  for (int64_t i = 0; i < n; ++i) {
    found.clear();
    for (int64_t da = -reach[0]; da <= reach[0]; ++da) {
      for (int64_t db = -reach[1]; db <= reach[1]; ++db) {
        for (int64_t dc = -reach[2]; dc <= reach[2]; ++dc) {
          std::array<int64_t, 3> target{bins[i][0] + da, bins[i][1] + db, bins[i][2] + dc}, image{0, 0, 0};
          bool outside = false;
          for (int a = 0; a < 3; ++a) {
            if (target[a] < 0 || target[a] >= cells[a]) {
              if (!periodic) {
                outside = true;
                break;
              }
              image[a] = floor_div(target[a], cells[a]);
              target[a] -= image[a] * cells[a];
            }
          }
          if (outside) continue;
          Vec3 offset{0, 0, 0};
          for (int a = 0; a < 3; ++a) {
            for (int d = 0; d < 3; ++d) offset[d] += image[a] * axes[a][d];
          }
          int64_t c = (target[0] * cells[1] + target[1]) * cells[2] + target[2];
          for (int64_t k = start[c]; k < start[c + 1]; ++k) {
            int64_t j = members[k];
            if (j == i && image[0] == 0 && image[1] == 0 && image[2] == 0) continue;
            Vec3 r{wrapped[j][0] + offset[0] - wrapped[i][0], wrapped[j][1] + offset[1] - wrapped[i][1],
                   wrapped[j][2] + offset[2] - wrapped[i][2]};
            if (dot(r, r) < cutoff2) {
              // r_ij = x_j - x_i + (image - wraps_j + wraps_i) · cell in the caller's coordinates.
              std::array<int32_t, 3> shift;
              for (int a = 0; a < 3; ++a) shift[a] = static_cast<int32_t>(image[a] - wraps[j][a] + wraps[i][a]);
              found.push_back({j, shift});
            }
          }
        }
      }
    }
    std::sort(found.begin(), found.end(), [](const Pair& p, const Pair& q) { return p.j != q.j ? p.j < q.j : p.shift < q.shift; });
    for (const Pair& p : found) {
      out.centre.push_back(i);
      out.neighbour.push_back(p.j);
      out.shifts.insert(out.shifts.end(), p.shift.begin(), p.shift.end());
    }
  }
  return out;
}

}  // namespace mlffc
