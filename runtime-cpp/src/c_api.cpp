// The C API over mlffc::Model: exceptions become a status and a per-thread message.
#include <exception>
#include <string>

#include "mlffc/mlffc.h"
#include "mlffc/model.hpp"

struct mlffc_model {
  mlffc::Model model;
  explicit mlffc_model(const char* artifact, int threads) : model(artifact, threads) {}
};

namespace {

thread_local std::string last_error;

template <typename F>
int32_t guarded(F&& body) {
  try {
    body();
    last_error.clear();
    return 0;
  } catch (const std::exception& error) {
    last_error = error.what();
  } catch (...) {
    last_error = "unknown error";
  }
  return 1;
}

}  // namespace

extern "C" {

mlffc_model* mlffc_model_create(const char* artifact, int32_t threads) {
  mlffc_model* model = nullptr;
  guarded([&] {
    if (artifact == nullptr) throw mlffc::Error("artifact path is null");
    model = new mlffc_model(artifact, threads);
  });
  return model;
}

int32_t mlffc_model_compute(mlffc_model* model, int64_t n, const int32_t* species, const double* positions, const double* cell,
                            const int32_t* pbc, double* energy, double* forces, double* stress) {
  return guarded([&] {
    if (model == nullptr || pbc == nullptr || energy == nullptr || forces == nullptr) {
      throw mlffc::Error("model, pbc, energy and forces must not be null");
    }
    if ((pbc[0] != 0) != (pbc[1] != 0) || (pbc[0] != 0) != (pbc[2] != 0)) {
      throw mlffc::Error("partial periodicity pbc=[" + std::to_string(pbc[0]) + ", " + std::to_string(pbc[1]) + ", " +
                         std::to_string(pbc[2]) + "] is not supported; use all or none");
    }
    mlffc::Result result = model->model.compute(n, species, positions, cell, pbc[0] != 0);
    *energy = result.energy;
    std::copy(result.forces.begin(), result.forces.end(), forces);
    if (stress != nullptr) std::copy(result.stress.begin(), result.stress.end(), stress);
  });
}

double mlffc_model_cutoff(const mlffc_model* model) { return model == nullptr ? 0.0 : model->model.cutoff(); }

void mlffc_model_destroy(mlffc_model* model) { delete model; }

const char* mlffc_last_error(void) { return last_error.c_str(); }

}  // extern "C"
