"""The composition root: the roles a process can run and the shell that runs them.

``scp`` receives DICOM, ``process`` turns instances into closed groups and jobs,
``submit`` hands jobs to the platform and reclaims storage, ``export`` sends result files
to DICOM and DICOMweb destinations. ``run`` is all four in one process; the role commands
run one each (scale-out, DESIGN.md §3.1). Only this package and the CLI wire ``streams``
and ``processors`` together.
"""

from processors.roles.export import export_role
from processors.roles.process import ProcessRole, process_role, process_role_with, processors_group
from processors.roles.scp import scp_role
from processors.roles.shell import Role, serve
from processors.roles.submit import (
    AssignmentFlag,
    submit_role,
)

__all__ = [
    "AssignmentFlag",
    "ProcessRole",
    "Role",
    "export_role",
    "process_role",
    "process_role_with",
    "processors_group",
    "scp_role",
    "serve",
    "submit_role",
]
