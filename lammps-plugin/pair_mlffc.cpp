// pair_style mlffc ARTIFACT_DIR / pair_coeff * * ELEMENT... : energy, forces and virial of a compiled
// mlffc artifact from LAMMPS's full neighbour list at the artifact's cutoff.
//
// Two ways to hand LAMMPS's atoms to the model:
//  - one MPI rank (any model): the graph holds the local atoms only; a neighbour that is a ghost
//    (a periodic image) becomes an edge to the local atom it images, its displacement the edge's
//    offset. This is the structure the Python and C++ runtimes see, so a message-passing model
//    gives their numbers (as pair_nequip does).
//  - several ranks (domain decomposition): local and ghost atoms are nodes, edges start at local
//    atoms only, and ghost forces go back to their owners (newton pair on). A ghost then has no
//    environment of its own, which is exact only for a model whose atom energies see one cutoff;
//    a message-passing model is refused there (as pair_allegro's split).
#include "pair_mlffc.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include "mlffc/model.hpp"

using namespace LAMMPS_NS;

namespace {

// Standard atomic weights (g/mol) of H..Kr, to catch a pair_coeff that names the model's elements
// in the wrong order (a type whose mass is another supported element's).
const double kMasses[] = {0,      1.008,  4.0026, 6.94,   9.0122, 10.81,  12.011, 14.007, 15.999, 18.998, 20.180, 22.990, 24.305,
                          26.982, 28.085, 30.974, 32.06,  35.45,  39.948, 39.098, 40.078, 44.956, 47.867, 50.942, 51.996, 54.938,
                          55.845, 58.933, 58.693, 63.546, 65.38,  69.723, 72.630, 74.922, 78.971, 79.904, 83.798};
constexpr int kMassesKnown = 36;

std::string supported_names(const mlffc::Model &model) {
  std::string names;
  for (int z : model.species()) names += (names.empty() ? "" : " ") + std::string(mlffc::element_symbol(z));
  return names;
}

}  // namespace

PairMlffc::PairMlffc(LAMMPS *lmp) : Pair(lmp) {
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;  // the virial comes from the model's dE/dr_ij, ghosts or not
  centroidstressflag = CENTROID_NOTAVAIL;
}

PairMlffc::~PairMlffc() {
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairMlffc::allocate() {
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

// pair_style mlffc ARTIFACT_DIR: loads the artifact, refused as the C++ runtime refuses it
// (manifest, payload hashes, torch release, CPU).
void PairMlffc::settings(int narg, char **arg) {
  if (narg != 1) error->all(FLERR, std::string("pair_style mlffc takes one argument, the artifact directory: pair_style mlffc ARTIFACT_DIR"));
  artifact_ = arg[0];
  try {
    model_ = std::make_unique<mlffc::Model>(artifact_);
  } catch (const std::exception &e) {
    error->all(FLERR, std::string("pair_style mlffc: ") + e.what());
  }
}

// pair_coeff * * H C N O: the element of each LAMMPS type, in type order.
void PairMlffc::coeff(int narg, char **arg) {
  if (!model_) error->all(FLERR, std::string("pair_coeff before pair_style mlffc ARTIFACT_DIR"));
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 2 + ntypes || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0) {
    error->all(FLERR, "pair_coeff for mlffc must be `pair_coeff * * ELEMENT...` with one element per atom type (" +
                          std::to_string(ntypes) + " types), got " + std::to_string(narg - 2) + " after * *");
  }
  type_z_.assign(ntypes + 1, 0);
  const auto &species = model_->species();
  for (int t = 1; t <= ntypes; t++) {
    std::string symbol = arg[1 + t];
    int z = mlffc::atomic_number(symbol);
    if (z == 0) error->all(FLERR, "pair_coeff mlffc: '" + symbol + "' (atom type " + std::to_string(t) + ") is not an element symbol");
    if (std::find(species.begin(), species.end(), z) == species.end()) {
      error->all(FLERR, "pair_coeff mlffc: element " + symbol + " (atom type " + std::to_string(t) + ") is not supported by " +
                            artifact_ + " (supported: " + supported_names(*model_) + ")");
    }
    type_z_[t] = z;
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairMlffc::init_style() {
  if (strcmp(update->unit_style, "metal") != 0) {
    error->all(FLERR, std::string("pair_style mlffc needs `units metal` (Å, eV: the artifact's units), got units ") + update->unit_style);
  }
  if (atom->tag_enable == 0) error->all(FLERR, std::string("pair_style mlffc needs atom IDs"));
  if ((domain->xperiodic || domain->yperiodic || domain->zperiodic) && !model_->periodic()) {
    error->all(FLERR, "pair_style mlffc: " + artifact_ + " was not built for periodic cells; use boundary f f f");
  }
  // a type whose mass is that of another element the model knows: pair_coeff's order is wrong
  if (atom->mass != nullptr) {
    const auto &species = model_->species();
    for (int t = 1; t <= atom->ntypes; t++) {
      int z = type_z_[t];
      if (!atom->mass_setflag[t] || z > kMassesKnown) continue;
      double mass = atom->mass[t];
      int nearest = 1;
      for (int k = 2; k <= kMassesKnown; k++)
        if (std::abs(kMasses[k] - mass) < std::abs(kMasses[nearest] - mass)) nearest = k;
      bool other = nearest != z && std::find(species.begin(), species.end(), nearest) != species.end();
      if (other && std::abs(kMasses[z] - mass) > 0.6) {
        error->all(FLERR, "pair_coeff mlffc maps atom type " + std::to_string(t) + " to " + mlffc::element_symbol(z) + " (mass " +
                              std::to_string(kMasses[z]) + ") but the type's mass is " + std::to_string(mass) + ", that of " +
                              mlffc::element_symbol(nearest) + ": list the elements in type order");
      }
    }
  }
  ghost_nodes_ = comm->nprocs > 1;
  if (ghost_nodes_) {
    int depth = model_->interactions();
    if (depth != 1) {
      std::string what = depth > 1 ? "passes messages over " + std::to_string(depth) + " interactions (an atom's energy reaches " +
                                         std::to_string(depth * model_->cutoff()) + " Å)"
                                   : "has a message-passing depth this plugin does not know";
      error->all(FLERR, "pair_style mlffc: " + artifact_ + " " + what + ", which domain decomposition over " +
                            std::to_string(comm->nprocs) + " MPI ranks cannot split; run it on one rank (mpirun -np 1)");
    }
    if (force->newton_pair == 0) error->all(FLERR, std::string("pair_style mlffc on several MPI ranks needs newton pair on"));
  }
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairMlffc::init_one(int, int) { return model_->cutoff(); }

void PairMlffc::compute(int eflag, int vflag) {
  ev_init(eflag, vflag);
  if (eflag_atom || vflag_atom) {
    error->all(FLERR, std::string("pair_style mlffc gives total energy and virial only (no per-atom energy or virial)"));
  }
  if (atom->nlocal == 0) return;
  try {
    if (ghost_nodes_) {
      compute_ghost(eflag, vflag);
    } else {
      compute_owner(eflag, vflag);
    }
  } catch (const std::exception &e) {
    error->one(FLERR, std::string("pair_style mlffc: ") + e.what());
  }
}

// LAMMPS's virial W_ab = sum_i x_ia f_ib = -sum_ij r_ija dE/dr_ijb, from the model's
// M_ab = sum_ij dE/dr_ija r_ijb (row-major): W = -M^T.
void PairMlffc::add_virial(const double *m) {
  virial[0] -= m[0];
  virial[1] -= m[4];
  virial[2] -= m[8];
  virial[3] -= m[3];
  virial[4] -= m[6];
  virial[5] -= m[7];
}

// The local atoms' neighbours within the cutoff, centres in increasing order (the model's edges
// are sorted by centre); calls visit(i, j) for each.
template <typename Visit>
static void for_each_pair(NeighList *list, double **x, double cutoff, Visit visit) {
  std::vector<int> order(list->inum);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return list->ilist[a] < list->ilist[b]; });
  const double cut2 = cutoff * cutoff;
  for (int ii : order) {
    int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cut2) visit(i, j);
    }
  }
}

void PairMlffc::compute_owner(int, int) {
  double **x = atom->x;
  double **f = atom->f;
  int nlocal = atom->nlocal;
  tagint *tag = atom->tag;
  // local index of each atom ID (all atoms are local on one rank)
  tagint most = 0;
  for (int i = 0; i < nlocal; i++) most = std::max(most, tag[i]);
  std::vector<int> local_of(most + 1, -1);
  for (int i = 0; i < nlocal; i++) local_of[tag[i]] = i;

  mlffc::Edges edges;
  for_each_pair(list, x, model_->cutoff(), [&](int i, int j) {
    int owner = j < nlocal ? j : (tag[j] <= most ? local_of[tag[j]] : -1);
    if (owner < 0) throw mlffc::Error("ghost atom " + std::to_string(tag[j]) + " images no local atom");
    edges.centre.push_back(i);
    edges.neighbour.push_back(owner);
    for (int d = 0; d < 3; d++) edges.offsets.push_back(x[j][d] - x[owner][d]);
  });
  std::vector<int32_t> species(nlocal);
  std::vector<double> positions(3 * nlocal);
  for (int i = 0; i < nlocal; i++) {
    species[i] = type_z_[atom->type[i]];
    for (int d = 0; d < 3; d++) positions[3 * i + d] = x[i][d];
  }
  mlffc::GraphResult result = model_->compute_edges(nlocal, species.data(), positions.data(), edges);
  for (int i = 0; i < nlocal; i++)
    for (int d = 0; d < 3; d++) f[i][d] += result.forces[3 * i + d];
  if (eflag_global) eng_vdwl += result.energy[0];
  if (vflag_global) add_virial(result.virial[0].data());
}

void PairMlffc::compute_ghost(int, int) {
  double **x = atom->x;
  double **f = atom->f;
  int nlocal = atom->nlocal;
  int nall = nlocal + atom->nghost;
  mlffc::Edges edges;
  for_each_pair(list, x, model_->cutoff(), [&](int i, int j) {
    edges.centre.push_back(i);
    edges.neighbour.push_back(j);
    edges.offsets.insert(edges.offsets.end(), {0.0, 0.0, 0.0});
  });
  // local atoms are group 0 and ghosts group 1: with no edges of their own, ghosts' energies are
  // constants, kept out of the energy that counts
  std::vector<int32_t> species(nall);
  std::vector<double> positions(3 * nall);
  std::vector<int64_t> group(nall);
  for (int i = 0; i < nall; i++) {
    species[i] = type_z_[atom->type[i]];
    group[i] = i < nlocal ? 0 : 1;
    for (int d = 0; d < 3; d++) positions[3 * i + d] = x[i][d];
  }
  mlffc::GraphResult result = model_->compute_edges(nall, species.data(), positions.data(), edges, group.data(), 2);
  for (int i = 0; i < nall; i++)
    for (int d = 0; d < 3; d++) f[i][d] += result.forces[3 * i + d];
  if (eflag_global) eng_vdwl += result.energy[0];
  if (vflag_global) add_virial(result.virial[0].data());
}
