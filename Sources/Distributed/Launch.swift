#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decides between MPI and a world of one. The program calls MPI_Init only when a launcher
/// started it; a plain `resnet train ...` never touches MPI (the single-process debug mode).
public enum Launch {
    /// True when an MPI launcher started this process: OpenMPI's mpirun/mpiexec
    /// (OMPI_COMM_WORLD_SIZE), a PMIx server (PMIX_RANK: OpenMPI 4+, `srun --mpi=pmix`),
    /// PMI-1/PMI-2 (PMI_SIZE, PMI_RANK, PMI_FD: MPICH's hydra, `srun --mpi=pmi2`), or a SLURM
    /// step under srun with an MPI plugin (SLURM_STEP_ID with SLURM_MPI_TYPE other than "none").
    /// A bare `sbatch` script (no srun step) is not a launch.
    public static var underMPILauncher: Bool {
        isMPILaunch { name in getenv(name).map { String(cString: $0) } }
    }

    /// The detection rule over any environment (`lookup` returns a variable's value or nil).
    public static func isMPILaunch(_ lookup: (String) -> String?) -> Bool {
        for name in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "PMI_FD"] {
            if let value = lookup(name), !value.isEmpty { return true }
        }
        if let step = lookup("SLURM_STEP_ID"), !step.isEmpty,
           let plugin = lookup("SLURM_MPI_TYPE"), !plugin.isEmpty, plugin != "none" {
            return true
        }
        return false
    }

    /// MPI when launched by an MPI launcher, otherwise a world of one.
    public static func makeCommunicator() throws -> Communicator {
        underMPILauncher ? try MPICommunicator() : LocalCommunicator()
    }
}
