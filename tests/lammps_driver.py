"""Runs LAMMPS cases through the lammps Python module (one process per MPI rank under mpirun) and
writes what rank 0 saw as JSON: python lammps_driver.py CASES.json OUT.json.

Each case: {"data": LAMMPS data file, "boundary": "p p p", "plugin", "pair_style", "pair_coeff",
"nve": optional {"steps", "every", "timestep", "temperature"}}. Its result: energy (eV), forces
(eV/Å, by atom ID), pressure tensor (bar: xx yy zz xy xz yz), etotal per `every` steps of the NVE
run, steps/s of that run, or the LAMMPS error message.
"""

import json
import sys
import time

import numpy as np
from lammps import lammps


def run_case(case: dict) -> dict:
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        for command in ["units metal", "atom_style atomic", f"boundary {case['boundary']}", f"read_data {case['data']}",
                        f"plugin load {case['plugin']}", f"pair_style {case['pair_style']}", f"pair_coeff {case['pair_coeff']}",
                        "neighbor 1.0 bin", "thermo_style custom step pe ke etotal press pxx pyy pzz pxy pxz pyz", "run 0"]:
            lmp.command(command)
        result = {
            "energy": lmp.get_thermo("pe"),
            "forces": np.array(lmp.gather_atoms("f", 1, 3)[:]).reshape(-1, 3).tolist(),
            "pressure": [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")],
            "procs": lmp.extract_setting("world_size"),
        }
        nve = case.get("nve")
        if nve:
            lmp.command(f"velocity all create {nve['temperature']} 4928459 mom yes rot yes dist gaussian")
            lmp.command(f"timestep {nve['timestep']}")
            lmp.command("fix nve all nve")
            lmp.command("run 0")
            etotal, started = [lmp.get_thermo("etotal")], time.perf_counter()
            for _ in range(nve["steps"] // nve["every"]):
                lmp.command(f"run {nve['every']} pre no post no")
                etotal.append(lmp.get_thermo("etotal"))
            result["etotal"] = etotal
            result["steps_per_s"] = nve["steps"] / (time.perf_counter() - started)
        return result
    except Exception as error:  # LAMMPS errors arrive as exceptions carrying its message
        return {"error": str(error)}
    finally:
        lmp.close()


def main() -> None:
    cases = json.loads(open(sys.argv[1]).read())
    results = [run_case(case) for case in cases]
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    rank = lmp.extract_setting("world_rank")
    lmp.close()
    if rank == 0:
        with open(sys.argv[2], "w") as handle:
            json.dump(results, handle)


if __name__ == "__main__":
    main()
