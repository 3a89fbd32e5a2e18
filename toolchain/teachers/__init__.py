"""Teachers behind one API. Knows nothing of students, compilers or runtimes."""

from mlffc.teachers.base import Capabilities, Labels, Teacher, TeacherCalculator, TeacherInfo
from mlffc.teachers.registry import TeacherEntry, available_teachers, load_teacher

__all__ = ["Capabilities", "Labels", "Teacher", "TeacherCalculator", "TeacherEntry", "TeacherInfo", "available_teachers",
           "load_teacher"]
