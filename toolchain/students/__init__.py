"""Student architectures: one graph input (mlffc.graph), per-structure energy, forces and stress by autograd."""

from mlffc.students.base import Student
from mlffc.students.registry import PRETRAINED, STUDENTS, build_student, checkpoint_path, load_student, save_student

__all__ = ["PRETRAINED", "STUDENTS", "Student", "build_student", "checkpoint_path", "load_student", "save_student"]
