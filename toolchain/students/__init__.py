"""Student architectures: one graph input (mlffc.graph), per-structure energy, forces and stress by autograd."""

from mlffc.students.base import Student
from mlffc.students.registry import STUDENTS, build_student, load_student, save_student

__all__ = ["STUDENTS", "Student", "build_student", "load_student", "save_student"]
