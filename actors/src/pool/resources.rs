//! What the host offers and what this process uses of it (for node capacity
//! and the health report's resource utilization).

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The host's CPU cores and memory in GB.
pub fn host_resources() -> (f64, f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut system = System::new();
    system.refresh_memory();
    (cores, system.total_memory() as f64 / 1e9)
}

/// Samples this process's CPU and memory use.
pub struct ResourceProbe {
    system: System,
    pid: Pid,
    cores: f64,
    memory_gb: f64,
}

/// One sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResourceSample {
    /// CPU use, percent of all the host's cores, since the last sample.
    pub cpu_percent: f64,
    /// Resident memory, percent of the host's memory.
    pub memory_percent: f64,
    /// Host cores.
    pub cores: f64,
    /// Host memory in GB.
    pub memory_gb: f64,
}

impl ResourceProbe {
    /// A probe of the current process.
    pub fn new() -> Self {
        let (cores, memory_gb) = host_resources();
        ResourceProbe {
            system: System::new(),
            pid: Pid::from_u32(std::process::id()),
            cores,
            memory_gb,
        }
    }

    /// Measures now (CPU use is averaged since the previous call).
    pub fn sample(&mut self) -> ResourceSample {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let (cpu, memory) = self
            .system
            .process(self.pid)
            .map_or((0.0, 0), |p| (f64::from(p.cpu_usage()), p.memory()));
        ResourceSample {
            // sysinfo gives percent of one core.
            cpu_percent: cpu / self.cores.max(1.0),
            memory_percent: memory as f64 / (self.memory_gb * 1e9).max(1.0) * 100.0,
            cores: self.cores,
            memory_gb: self.memory_gb,
        }
    }
}

impl Default for ResourceProbe {
    fn default() -> Self {
        Self::new()
    }
}
