//! Where training runs: `device = "auto" | "cpu" | "wgpu" | "cuda"`, chosen at the edge.
//!
//! - `cpu`: burn's `flex` backend (always built; deterministic for a seed).
//! - `wgpu`: burn's `wgpu` backend: a GPU through Vulkan/Metal/DX12, or the CPU through a
//!   software Vulkan driver (Mesa's lavapipe). Needs the crate feature `wgpu`
//!   (`cargo run --release --features wgpu -p meshrl-cli -- train ... --device wgpu`).
//! - `cuda`: burn's CUDA backend on NVIDIA GPU 0. Needs the crate feature `cuda` (burn loads
//!   the CUDA driver at run time, so it builds without the toolkit, but its first build
//!   downloads an LLVM bundle from GitHub; a separate build from the `wgpu` one:
//!   `scripts/bench-gpu` keeps it in its own target directory).
//! - `auto`: a discrete or integrated GPU through `wgpu` when the build has it and the machine
//!   has one, else `cpu`. A software Vulkan driver does not count as a GPU. On a machine
//!   without a GPU no wgpu device is made (`wgpu_lists_a_gpu`).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::PpoError;

/// The `device` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = PpoError;
    fn from_str(s: &str) -> Result<Self, PpoError> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "wgpu" => Ok(DeviceChoice::Wgpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(PpoError::InvalidConfig {
                field: "ppo.device".into(),
                reason: format!("`{other}`: expected `auto`, `cpu`, `wgpu` or `cuda`"),
            }),
        }
    }
}

/// Whether this build has the `wgpu` backend.
pub const HAS_WGPU: bool = cfg!(feature = "wgpu");

/// Whether this build has the `cuda` backend.
pub const HAS_CUDA: bool = cfg!(feature = "cuda");

/// `ask()`, or `false` if it panics. A missing adapter panics inside burn/cubecl (on its device
/// thread and then on ours): caught, with the expected panic messages kept off the terminal.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn quietly(ask: impl FnOnce() -> bool + std::panic::UnwindSafe) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(ask).unwrap_or(false);
    std::panic::set_hook(hook);
    ok
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn probe(device: &Device) -> bool {
    use burn::tensor::Tensor;
    let d = device.clone();
    quietly(move || {
        let t = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &d);
        t.sum().into_scalar::<f32>() == 6.0
    })
}

/// Resolves a device choice to a burn device and its name (`flex`, `wgpu`).
pub fn select(choice: DeviceChoice) -> Result<(Device, &'static str), PpoError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::flex(), "flex")),
        DeviceChoice::Wgpu => wgpu_device(),
        DeviceChoice::Cuda => cuda_device(),
        DeviceChoice::Auto => Ok(auto_device()),
    }
}

/// The error for a `ppo.device` that cannot be used, with `reason`.
fn device_error(reason: &str) -> PpoError {
    PpoError::InvalidConfig {
        field: "ppo.device".into(),
        reason: reason.into(),
    }
}

/// The error for a device whose backend (`label`) this build lacks: rebuild with `feature`.
#[cfg(any(not(feature = "wgpu"), not(feature = "cuda")))]
fn not_in_this_build(feature: &str, label: &str) -> PpoError {
    device_error(&format!(
        "`{feature}`: this build has no {label} backend; rebuild with the `{feature}` feature \
         (cargo run --release --features {feature} -p meshrl-cli -- ...)"
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<(Device, &'static str), PpoError> {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    if *OK.get_or_init(|| probe(&device)) {
        Ok((device, "wgpu"))
    } else {
        Err(device_error(
            "`wgpu`: no usable adapter (no GPU driver; on a CPU-only Linux machine install a \
             software Vulkan driver: apt-get install mesa-vulkan-drivers)",
        ))
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<(Device, &'static str), PpoError> {
    Err(not_in_this_build("wgpu", "wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<(Device, &'static str), PpoError> {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // Constructing the device may already touch the driver: keep a panic there inside too.
    let device = std::panic::catch_unwind(|| Device::cuda(0)).ok();
    match device {
        Some(device) if *OK.get_or_init(|| probe(&device)) => Ok((device, "cuda")),
        _ => Err(device_error(
            "`cuda`: no usable CUDA device (no NVIDIA GPU, or its driver's libcuda is missing)",
        )),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<(Device, &'static str), PpoError> {
    Err(not_in_this_build("cuda", "CUDA"))
}

/// Whether wgpu lists a GPU on this machine (not a software rasterizer such as lavapipe), asked
/// without making a device. A burn wgpu device starts cubecl's device server threads, which
/// stay for the life of the process and wake every 150 µs while idle (~20 % of a core for the
/// two that probing used to leave behind on a CPU-only machine), so `auto` makes one only where
/// there is a GPU to probe.
#[cfg(feature = "wgpu")]
fn wgpu_lists_a_gpu() -> bool {
    use cubecl_runtime::runtime::Runtime;
    quietly(cubecl_wgpu::WgpuRuntime::<cubecl_wgpu::AutoCompiler>::is_available)
}

fn auto_device() -> (Device, &'static str) {
    #[cfg(feature = "wgpu")]
    {
        use burn::tensor::DeviceKind;
        static GPU: std::sync::OnceLock<Option<DeviceKind>> = std::sync::OnceLock::new();
        let kind = GPU.get_or_init(|| {
            if !wgpu_lists_a_gpu() {
                return None;
            }
            [DeviceKind::DiscreteGpu(0), DeviceKind::IntegratedGpu(0)]
                .into_iter()
                .find(|k| probe(&Device::wgpu(k.clone())))
        });
        if let Some(k) = kind {
            return (Device::wgpu(k.clone()), "wgpu");
        }
    }
    (Device::flex(), "flex")
}
