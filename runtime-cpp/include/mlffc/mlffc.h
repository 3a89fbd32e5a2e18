/* mlffc C API: load a compiled artifact, compute energy, forces and stress, from C, Fortran
 * (iso_c_binding) or an MD engine. Units: Å, eV, eV/Å, eV/Å³. Arrays are row-major doubles.
 * Functions that can fail return NULL or a non-zero status; mlffc_last_error() then says why
 * (per thread, valid until the next failing call on that thread). */
#ifndef MLFFC_H
#define MLFFC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLFFC_C_API __attribute__((visibility("default")))

typedef struct mlffc_model mlffc_model;

/* Load the artifact directory (manifest.json + payload) after checking hashes and compatibility.
 * threads <= 0: the count the artifact was built for. NULL on failure. */
MLFFC_C_API mlffc_model* mlffc_model_create(const char* artifact, int32_t threads);

/* One structure of n atoms: species [n] atomic numbers, positions [n*3], cell [9] (rows are
 * lattice vectors; may be NULL when pbc is all zero), pbc [3] (all 1 or all 0).
 * Writes energy [1] (eV), forces [n*3] (eV/Å) and stress [9] (eV/Å³, zeros when not periodic;
 * stress may be NULL). Returns 0 on success. */
MLFFC_C_API int32_t mlffc_model_compute(mlffc_model* model, int64_t n, const int32_t* species, const double* positions,
                                        const double* cell, const int32_t* pbc, double* energy, double* forces,
                                        double* stress);

/* The model's cutoff in Å (pairs beyond it contribute nothing). */
MLFFC_C_API double mlffc_model_cutoff(const mlffc_model* model);

MLFFC_C_API void mlffc_model_destroy(mlffc_model* model);

/* Message of the last failure on this thread ("" when none). */
MLFFC_C_API const char* mlffc_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MLFFC_H */
