// pair_style mlffc: a compiled mlffc artifact (runtime-cpp's mlffc::Model) as a LAMMPS pair style,
// loaded with `plugin load`. Units metal (Å, eV) are the artifact's own.
#ifndef LMP_PAIR_MLFFC_H
#define LMP_PAIR_MLFFC_H

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace mlffc {
class Model;
}

namespace LAMMPS_NS {

class PairMlffc : public Pair {
 public:
  explicit PairMlffc(class LAMMPS *);
  ~PairMlffc() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  std::string artifact_;
  std::unique_ptr<mlffc::Model> model_;
  std::vector<int> type_z_;  // atomic number of each LAMMPS type, index 1..ntypes
  // Ghost atoms as graph nodes (domain decomposition, strictly local models only), rather than
  // mapped onto the local atoms they are images of (one rank, any model).
  bool ghost_nodes_ = false;

  void allocate();
  void compute_owner(int eflag, int vflag);
  void compute_ghost(int eflag, int vflag);
  void add_virial(const double *model_virial);
};

}  // namespace LAMMPS_NS

#endif
